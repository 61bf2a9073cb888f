"""convseg's hooks, one per module, registered in mmseg's ``HOOKS``.

- ``AtomicCheckpointHook`` (:mod:`.atomic_checkpoint`): crash-safe
  checkpoints for ``default_hooks.checkpoint``.
- ``RandomStateHook`` (:mod:`.random_streams`): separate data and model
  random streams, kept in checkpoints, for exact resumes.
- ``NonFiniteCheckHook`` (:mod:`.non_finite_check`): stop on a NaN/inf loss;
  never save NaN/inf weights.
- ``CheckpointMatchHook`` (:mod:`.checkpoint_match`): refuse a checkpoint
  whose classes or arch do not fit the model before it is loaded.
- ``LrLoggerHook`` (:mod:`.lr_logger`): log the lr of chosen param groups.
- ``ProgressBarHook`` (:mod:`.progress_bar`): a progress bar with ETA for
  validation and testing.
- ``TrainSpeedHook`` (:mod:`.train_speed`): channels-last and a compiled
  backbone for training, from the config's ``train_speed`` switches.
"""
from .atomic_checkpoint import (AtomicCheckpointHook,  # noqa: F401
                                CheckpointSaveError)
from .checkpoint_match import CheckpointMatchHook  # noqa: F401
from .lr_logger import LrLoggerHook  # noqa: F401
from .non_finite_check import (NonFiniteCheckHook,  # noqa: F401
                               NonFiniteLossError, NonFiniteWeightsError)
from .progress_bar import ProgressBarHook  # noqa: F401
from .random_streams import RANDOM_STATE_KEY, RandomStateHook  # noqa: F401
from .train_speed import TrainSpeedHook  # noqa: F401
