"""Datasets: layout checks, synthetic dataset generators, statistics and
class weights, and converters of labelling-tool exports
(:mod:`convseg.datasets.converters`)."""
from .synthetic import (SyntheticScenesDataset, generate_ade20k,  # noqa: F401
                        generate_cityscapes, generate_scenes)
from .checks import check_dataset, check_dataset_layout  # noqa: F401
from .cached_load import CachedLoad  # noqa: F401
from .skip_unreadable import SkipUnreadable  # noqa: F401
from .stats import class_weights, dataset_stats  # noqa: F401
