"""An optim wrapper that trains under CPU autocast (bf16).

mmengine's ``AmpOptimWrapper`` refuses a machine without a GPU. On a CPU
that computes bf16 in hardware (AVX-512 BF16, AMX), autocast to bf16 runs
the convolutions and matrix products in bf16 while the weights, their
gradients and the optimizer stay fp32. bf16 has fp32's exponent range, so
no loss scaling is needed.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmseg.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward pass (``optim_context``) runs under
    ``torch.autocast('cpu', dtype=torch.bfloat16)``."""

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """The parent's context (gradient accumulation) inside CPU bf16
        autocast."""
        with super().optim_context(model), \
                torch.autocast('cpu', dtype=torch.bfloat16):
            yield
