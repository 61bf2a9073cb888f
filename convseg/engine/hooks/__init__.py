"""convseg's hooks, one per module, registered in mmseg's ``HOOKS``.

- ``AtomicCheckpointHook`` (:mod:`.atomic_checkpoint_hook`): crash-safe
  checkpoints for ``default_hooks.checkpoint``.
- ``RandomStateHook`` (:mod:`.random_state_hook`): separate data and model
  random streams, kept in checkpoints, for exact resumes.
- ``NonFiniteCheckHook`` (:mod:`.non_finite_check_hook`): stop on a NaN/inf
  loss; never save NaN/inf weights.
- ``CheckpointMatchHook`` (:mod:`.checkpoint_match_hook`): refuse a checkpoint
  whose classes or arch do not fit the model before it is loaded.
- ``FastInferenceHook`` (:mod:`.fast_inference_hook`): test through the
  inference fast path (``tools/test.py --fast``).
- ``LrLoggerHook`` (:mod:`.lr_logger_hook`): log the lr of chosen param groups.
- ``ProgressBarHook`` (:mod:`.progress_bar_hook`): a progress bar with ETA for
  validation and testing.
- ``TrainSpeedHook`` (:mod:`.train_speed_hook`): the config's ``train_speed``
  switches (fused AdamW, bf16, channels-last, a compiled backbone).
"""
from .atomic_checkpoint_hook import (AtomicCheckpointHook,  # noqa: F401
                                     CheckpointSaveError)
from .checkpoint_match_hook import CheckpointMatchHook  # noqa: F401
from .fast_inference_hook import FastInferenceHook  # noqa: F401
from .lr_logger_hook import LrLoggerHook  # noqa: F401
from .non_finite_check_hook import (NonFiniteCheckHook,  # noqa: F401
                                    NonFiniteLossError,
                                    NonFiniteWeightsError)
from .progress_bar_hook import ProgressBarHook  # noqa: F401
from .random_state_hook import RANDOM_STATE_KEY, RandomStateHook  # noqa: F401
from .train_speed_hook import TrainSpeedHook  # noqa: F401
