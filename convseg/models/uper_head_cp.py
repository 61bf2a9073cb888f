"""mmseg's UPerHead with its FPN fusion recomputed in the backward pass.

``decode_head=dict(type='CheckpointedUPerHead', with_cp=True, ...)`` takes
every argument of mmseg's ``UPerHead``. In training with ``with_cp`` the
fusion (the FPN's 3x3 convs, the upsampling of each level to 1/4 scale, their
concatenation and the bottleneck conv) runs under
``torch.utils.checkpoint``: its activations, the head's largest (a
``4 * channels`` map at 1/4 of the input), are not kept but recomputed in the
backward pass. The BatchNorm running statistics are updated once per step,
as without checkpointing: the recomputation restores them after it runs.
Outputs, losses and gradients equal ``UPerHead``'s.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmseg.models.decode_heads import UPerHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch.utils.checkpoint import checkpoint

from .uper_laterals import top_down_laterals


@contextmanager
def _running_stats_kept(modules: list[nn.Module]) -> Iterator[None]:
    """Restore the norm layers' running statistics after the block."""
    norms = [m for module in modules for m in module.modules()
             if isinstance(m, nn.modules.batchnorm._NormBase)
             and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(),
              m.num_batches_tracked.clone()) for m in norms]
    try:
        yield
    finally:  # also when the recomputation stops early, as it may
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


@MODELS.register_module()
class CheckpointedUPerHead(UPerHead):
    """``UPerHead`` whose FPN fusion is recomputed in backward when
    ``with_cp`` is True and the head is training."""

    def __init__(self, with_cp: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.with_cp = with_cp

    def _fuse(self, *laterals: torch.Tensor) -> torch.Tensor:
        """FPN convs on the top-down laterals (N, C, H_i, W_i), each
        resized to level 0's size, concatenated, bottleneck: (N, C, H_0,
        W_0)."""
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1])]
        outs.append(laterals[-1])
        size = outs[0].shape[2:]
        outs = [outs[0]] + [
            resize(x, size=size, mode='bilinear',
                   align_corners=self.align_corners) for x in outs[1:]
        ]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))

    def _forward_feature(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The decoder's last feature map (N, channels, H_0, W_0)."""
        laterals = top_down_laterals(self, inputs)
        if not (self.with_cp and self.training and torch.is_grad_enabled()):
            return self._fuse(*laterals)
        calls = []

        def fuse(*xs: torch.Tensor) -> torch.Tensor:
            calls.append(None)
            if len(calls) == 1:
                return self._fuse(*xs)
            with _running_stats_kept([self.fpn_convs, self.fpn_bottleneck]):
                return self._fuse(*xs)

        return checkpoint(fuse, *laterals, use_reentrant=False)
