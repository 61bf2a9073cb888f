"""Models: the ConvNeXt backbone and checkpoint key maps."""
from .convnext import ConvNeXt  # noqa: F401
