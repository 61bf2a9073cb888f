"""Datasets: layout checks and synthetic dataset generators."""
from .synthetic import generate_ade20k, generate_cityscapes  # noqa: F401
