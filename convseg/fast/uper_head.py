"""The forward pass of an mmseg ``UPerHead`` built from the fast layers."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads import UPerHead

from .errors import UnsupportedModelError
from .folding import FoldedConv, check_conv_module
from .kernels import KernelChooser, Pointwise
from .nhwc import resize, to_nchw, to_nhwc
from .resize_conv import ConcatResizeConv, ConcatResizePointwise


class FastUPerHead(nn.Module):
    """The forward pass of an mmseg ``UPerHead`` (eval mode) with fast parts.

    Takes the backbone's feature maps (N, C_i, H_i, W_i), returns the class
    logits (N, num_classes, H_0, W_0) at the resolution of the first selected
    map, as ``UPerHead.forward`` does, in channels-last memory format. Runs
    channels-last inside. Built from a UPerHead (or a
    ``PointwiseFuseUPerHead``, whose FPN fusion is 1x1) whose ConvModules are
    conv + BatchNorm + ReLU; the parameters stay in the head.
    """

    def __init__(self, head: UPerHead, chooser: KernelChooser) -> None:
        super().__init__()
        if head.input_transform != 'multiple_select':
            raise UnsupportedModelError(
                f'UPerHead with input_transform={head.input_transform!r}')
        modules = {
            'bottleneck': head.bottleneck,
            'fpn_bottleneck': head.fpn_bottleneck
        }
        for i, ppm in enumerate(head.psp_modules):
            modules[f'psp_modules.{i}.1'] = ppm[1]
        for name in ('lateral_convs', 'fpn_convs'):
            for i, module in enumerate(getattr(head, name)):
                modules[f'{name}.{i}'] = module
        for name, module in modules.items():
            check_conv_module(module, f'decode_head.{name}')
        conv_seg = head.conv_seg
        if type(conv_seg) is not nn.Conv2d or conv_seg.kernel_size != (1, 1):
            raise UnsupportedModelError(
                'decode_head.conv_seg must be a 1x1 nn.Conv2d, got '
                f'{conv_seg}')
        self.in_index = list(head.in_index)
        self.align_corners = head.align_corners
        self.pool_scales = tuple(head.psp_modules.pool_scales)
        channels = head.channels
        self.laterals = nn.ModuleList(
            FoldedConv(m, chooser) for m in head.lateral_convs)
        self.fpn_convs = nn.ModuleList(
            FoldedConv(m, chooser) for m in head.fpn_convs)
        self.psp_convs = nn.ModuleList(
            FoldedConv(ppm[1], chooser) for ppm in head.psp_modules)
        self.psp_bottleneck = ConcatResizeConv(
            head.bottleneck,
            [head.in_channels[-1]] + [channels] * len(self.pool_scales),
            self.align_corners, chooser)
        # 3x3 in mmseg's UPerHead, 1x1 in PointwiseFuseUPerHead
        fuse = (ConcatResizePointwise
                if head.fpn_bottleneck.conv.kernel_size == (1, 1) else
                ConcatResizeConv)
        self.fpn_bottleneck = fuse(
            head.fpn_bottleneck, [channels] * len(head.in_channels),
            self.align_corners, chooser)
        self.conv_seg = Pointwise(conv_seg.weight.flatten(1), conv_seg.bias,
                                  chooser)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits (N, num_classes, H_0, W_0) from the backbone's maps."""
        dtype = self.conv_seg.weight.dtype
        feats = [to_nhwc(inputs[i].to(dtype)) for i in self.in_index]
        top = feats[-1]
        pooled = [
            conv(to_nhwc(F.adaptive_avg_pool2d(to_nchw(top), scale)))
            for conv, scale in zip(self.psp_convs, self.pool_scales)
        ]
        laterals = [conv(feats[i]) for i, conv in enumerate(self.laterals)]
        laterals.append(self.psp_bottleneck([top] + pooled, top.shape[1:3]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] += resize(laterals[i], laterals[i - 1].shape[1:3],
                                      self.align_corners)
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)]
        outs.append(laterals[-1])
        feat = self.fpn_bottleneck(outs, outs[0].shape[1:3])
        logits = self.conv_seg(feat)
        return to_nchw(logits)
