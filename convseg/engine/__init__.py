"""Training-engine parts: the layer-decay optimizer constructor and hooks."""
from .layer_decay import LayerDecayOptimWrapperConstructor  # noqa: F401
from .launch import fit_to_device  # noqa: F401
from .lr_logger import LrLoggerHook  # noqa: F401
from .checkpoint_io import find_resume_checkpoint  # noqa: F401
from .hooks import (AtomicCheckpointHook, CheckpointMatchHook,  # noqa: F401
                    NonFiniteCheckHook, RandomStateHook)
from .train_speed import TrainSpeedHook, apply_train_speed  # noqa: F401
