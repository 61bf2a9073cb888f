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
"""
from __future__ import annotations

from mmcv.cnn import ConvModule
from mmseg.models.decode_heads import UPerHead
from mmseg.registry import MODELS


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
