"""Datasets: layout checks and synthetic dataset generators."""
from .synthetic import (SyntheticScenesDataset, generate_ade20k,  # noqa: F401
                        generate_cityscapes, generate_scenes)
from .checks import check_dataset, check_dataset_layout  # noqa: F401
from .skip_unreadable import SkipUnreadable, apply_skip_unreadable  # noqa: F401
