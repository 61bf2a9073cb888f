"""UPerHead that fuses its FPN levels with a 1x1 conv instead of a 3x3.

mmseg's ``UPerHead`` concatenates its four FPN outputs, resized to the
finest level, and fuses them with a 3x3 ConvModule (``fpn_bottleneck``,
``4 * channels -> channels``). In a slim head at a fine stride that conv is
the costliest layer of a training step (the quickstart model: 128 -> 32
channels at 32x32, about a sixth of the step on 2 CPU cores), and its
weight gradient is slow in oneDNN. The FPN convs before it are 3x3 already,
so the fusion itself can be pixel-wise. Everything else, the state-dict keys
included, is ``UPerHead``'s; only ``fpn_bottleneck.conv.weight`` is
(channels, 4 * channels, 1, 1).

A 1x1 conv commutes with bilinear resizing (both are linear, one per pixel,
the other per channel), so the head applies each level's slice of the
fusion weight at that level's own resolution and resizes only the result:
the 4 * channels concatenation at the finest level is never built, in
training too. The norm and activation then see the same sum as after the
concatenation, up to the order of the additions.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads import UPerHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS

from .uper_laterals import top_down_laterals


@MODELS.register_module()
class PointwiseFuseUPerHead(UPerHead):
    """``UPerHead`` whose ``fpn_bottleneck`` is a 1x1 ConvModule.

    Args:
        **kwargs: ``UPerHead``'s arguments.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fpn_bottleneck = ConvModule(
            len(self.in_channels) * self.channels, self.channels, 1,
            conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

    def _forward_feature(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """``UPerHead``'s features: the FPN levels fused by the 1x1 conv,
        each level convolved at its own resolution."""
        fuse = self.fpn_bottleneck
        if (type(fuse.conv) is not nn.Conv2d
                or fuse.order != ('conv', 'norm', 'act')):
            # a conv_cfg's own conv (weight standardisation, say) or another
            # order: mmseg's concatenation, which runs it as it is
            return super()._forward_feature(inputs)
        laterals = top_down_laterals(self, inputs)
        levels = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)]
        levels.append(laterals[-1])
        weights = fuse.conv.weight.split(self.channels, dim=1)
        size = levels[0].shape[2:]
        feats = F.conv2d(levels[0], weights[0], fuse.conv.bias)
        for level, weight in zip(levels[1:], weights[1:]):
            feats = feats + resize(
                F.conv2d(level, weight), size=size, mode='bilinear',
                align_corners=self.align_corners)
        if fuse.with_norm:
            feats = fuse.norm(feats)
        if fuse.with_activation:
            feats = fuse.activate(feats)
        return feats
