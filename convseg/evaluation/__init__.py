"""Evaluation extras: per-class tables, confusion matrices, result files."""
