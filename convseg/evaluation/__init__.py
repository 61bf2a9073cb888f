"""Evaluation extras: a per-class IoU metric writing result files and
prediction PNGs in official ids, and a progress bar for val/test."""
from .metric import PerClassIoUMetric  # noqa: F401
from .progress import ProgressBarHook  # noqa: F401
from .results import write_results  # noqa: F401
