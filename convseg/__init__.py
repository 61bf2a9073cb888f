"""convseg: ConvNeXt + UPerNet semantic segmentation on the OpenMMLab stack.

Importing convseg installs the shims of :mod:`convseg.compat` and registers
its parts in mmseg's registries (backbone ``ConvNeXt``, optim-wrapper
constructor ``LayerDecayOptimWrapperConstructor``, hooks, ...).
"""
from . import compat

compat.apply()

from . import datasets, engine, evaluation, models  # noqa: E402,F401

__version__ = '0.1.0'
