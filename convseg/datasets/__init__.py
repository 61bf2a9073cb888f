"""Datasets: layout checks and synthetic dataset generators."""
