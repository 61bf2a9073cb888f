"""Evaluation extras: a per-class IoU metric writing result files,
prediction PNGs in official ids and a confusion matrix from the same pass.
(The val/test progress bar is a hook:
:mod:`convseg.engine.hooks.progress_bar_hook`.)"""
from .metric import PerClassIoUMetric  # noqa: F401
from .results import write_results  # noqa: F401
