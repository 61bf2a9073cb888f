"""Evaluation extras: per-class tables, confusion matrices, result files."""
from .metric import PerClassIoUMetric  # noqa: F401
from .progress import ProgressBarHook  # noqa: F401
from .results import write_results  # noqa: F401
