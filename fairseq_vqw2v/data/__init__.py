"""Datasets, manifest reading and checks, masking, label encoding, and the unit and feature file
formats (no fairseq registry code)."""
