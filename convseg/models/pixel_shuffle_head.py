"""UPerHead whose class scores come at a finer stride, by a pixel shuffle.

mmseg's ``UPerHead`` classifies its fused map at the stride of its finest
input (4 for ConvNeXt) and the segmentor upsamples the scores bilinearly, so
a label border inside a 4x4 cell cannot be placed. Here the fused map
(N, channels, H, W) goes through a 1x1 conv (BN, ReLU) to
``shuffle_channels * upsample**2`` channels, a pixel shuffle to
(N, shuffle_channels, upsample * H, upsample * W), and a 3x3 classifier:
each cell's feature says where a border crosses it, and the 3x3 conv
smooths across cells.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads import UPerHead
from mmseg.registry import MODELS


@MODELS.register_module()
class PixelShuffleUPerHead(UPerHead):
    """``UPerHead`` with class scores at ``1 / upsample`` of its stride.

    Args:
        upsample: factor of the pixel shuffle (4 brings stride 4 to 1).
        shuffle_channels: channels per output pixel before the classifier.
        **kwargs: ``UPerHead``'s arguments.
    """

    def __init__(self, upsample: int = 4, shuffle_channels: int = 16,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if upsample < 1 or shuffle_channels < 1:
            raise ValueError(
                'PixelShuffleUPerHead: upsample and shuffle_channels must be '
                f'>= 1, got upsample={upsample!r}, '
                f'shuffle_channels={shuffle_channels!r}')
        self.expand = ConvModule(
            self.channels, shuffle_channels * upsample**2, 1,
            conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)
        self.shuffle = nn.PixelShuffle(upsample)
        self.conv_seg = nn.Conv2d(
            shuffle_channels, self.out_channels, 3, padding=1)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Scores (N, num_classes, upsample * H, upsample * W) of the
        multi-level features ``inputs`` (finest of H x W)."""
        fused = self._forward_feature(inputs)
        if self.dropout is not None:
            fused = self.dropout(fused)
        return self.conv_seg(self.shuffle(self.expand(fused)))
