"""Building blocks of the models (no fairseq registry code)."""
