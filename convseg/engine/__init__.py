"""Training-engine parts: the layer-decay optimizer constructor, launch
helpers, crash-safe checkpoint files, the training speed switches, the CPU
bf16 autocast optim wrapper and the hooks (one per module under
:mod:`convseg.engine.hooks`)."""
from .checkpoint_files import find_resume_checkpoint  # noqa: F401
from .cpu_autocast import CPUAutocastOptimWrapper  # noqa: F401
from .hooks import (AtomicCheckpointHook, CheckpointMatchHook,  # noqa: F401
                    FastInferenceHook, LrLoggerHook, NonFiniteCheckHook,
                    ProgressBarHook, RandomStateHook, TrainSpeedHook)
from .launch import fit_to_device  # noqa: F401
from .layer_decay import LayerDecayOptimWrapperConstructor  # noqa: F401
