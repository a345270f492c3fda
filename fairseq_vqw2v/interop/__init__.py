"""Conversion of fairseq reference checkpoints (wav2vec, roberta) into our models."""
