"""Models: the ConvNeXt backbone, checkpoint key maps, and two UPerHead
variants (FPN checkpointing, full-resolution scores by pixel shuffle)."""
from .convnext import ConvNeXt  # noqa: F401
from .pixel_shuffle_head import PixelShuffleUPerHead  # noqa: F401
from .uper_head_cp import CheckpointedUPerHead  # noqa: F401
