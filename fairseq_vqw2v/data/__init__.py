"""Datasets, manifest reading and checks, masking and label encoding (no fairseq registry code)."""
