"""An optim wrapper that trains under CPU autocast (bf16).

mmengine's ``AmpOptimWrapper`` refuses a machine without a GPU. On a CPU
that computes bf16 in hardware (AVX-512 BF16, AMX), autocast to bf16 runs
the convolutions and matrix products in bf16 while the weights, their
gradients and the optimizer stay fp32. bf16 has fp32's exponent range, so
no loss scaling is needed.

A config names the wrapper as ``optim_wrapper.type``; the ``train_speed``
bf16 switch turns a runner's built ``OptimWrapper`` into one in place
(:meth:`CPUAutocastOptimWrapper.adopt`).
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

    @classmethod
    def adopt(cls, optim_wrapper: OptimWrapper) -> None:
        """Turn a built ``OptimWrapper`` (exactly that class) into this one,
        in place.

        The same object, because the param schedulers that
        ``Runner.train()`` builds before any hook runs hold the wrapper and
        count its steps (a new wrapper would leave them counting one that
        never steps, and mmengine would warn that the schedule skipped its
        first value). This class adds no state to ``OptimWrapper``, only
        the autocast around ``optim_context``, so the object stays whole.
        """
        if type(optim_wrapper) is not OptimWrapper:
            raise TypeError(
                f'only a plain OptimWrapper can become a {cls.__name__}, '
                f'not a {type(optim_wrapper).__name__}')
        optim_wrapper.__class__ = cls
