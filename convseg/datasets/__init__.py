"""Datasets: layout checks and synthetic dataset generators."""
from .synthetic import (SyntheticScenesDataset, generate_ade20k,  # noqa: F401
                        generate_cityscapes, generate_scenes)
