"""Models: the ConvNeXt backbone, checkpoint key maps, and three UPerHead
variants (FPN checkpointing, full-resolution scores by pixel shuffle, a 1x1
fusion of the FPN levels)."""
from .convnext import ConvNeXt  # noqa: F401
from .pixel_shuffle_head import PixelShuffleUPerHead  # noqa: F401
from .pointwise_fuse_head import PointwiseFuseUPerHead  # noqa: F401
from .uper_head_cp import CheckpointedUPerHead  # noqa: F401
