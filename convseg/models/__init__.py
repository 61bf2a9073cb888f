"""Models: the ConvNeXt backbone, checkpoint key maps and a checkpointed
UPerHead."""
from .convnext import ConvNeXt  # noqa: F401
from .uper_head_cp import CheckpointedUPerHead  # noqa: F401
