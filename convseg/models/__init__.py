"""Models: the ConvNeXt backbone, checkpoint key maps and the pixel-shuffle
UPerHead."""
from .convnext import ConvNeXt  # noqa: F401
from .pixel_shuffle_head import PixelShuffleUPerHead  # noqa: F401
