"""The forward pass of convseg's ConvNeXt with its pointwise layers chosen.

Each block's two linear layers (``pwconv1``, ``pwconv2``, about three
quarters of the backbone's time) run through :class:`Pointwise`, so by
whichever kernel measures fastest on this CPU, with the layer scale
``gamma`` folded into ``pwconv2``. Everything else runs the backbone's own
modules, which this module does not hold (the state dict stays the plain
model's): the backbone is passed to :meth:`FastConvNeXt.forward`.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..models.convnext import Block, ConvNeXt
from .errors import UnsupportedModelError
from .kernels import KernelChooser, Pointwise
from .nhwc import to_nchw, to_nhwc


class FastConvNeXt(nn.Module):
    """Pointwise layers of every block of a ConvNeXt, as chosen kernels."""

    def __init__(self, backbone: ConvNeXt, chooser: KernelChooser) -> None:
        super().__init__()
        if type(backbone) is not ConvNeXt:
            raise UnsupportedModelError(
                f'the backbone is a {type(backbone).__name__}')
        self.stages = nn.ModuleList()
        for i, stage in enumerate(backbone.stages):
            layers = nn.ModuleList()
            for j, block in enumerate(stage):
                if type(block) is not Block:
                    raise UnsupportedModelError(
                        f'backbone.stages.{i}.{j} is a '
                        f'{type(block).__name__}, not a ConvNeXt Block')
                weight = block.pwconv2.weight.detach()
                bias = block.pwconv2.bias.detach()
                if block.gamma is not None:
                    gamma = block.gamma.detach()
                    weight, bias = weight * gamma[:, None], bias * gamma
                layers.append(
                    nn.ModuleList([
                        Pointwise(block.pwconv1.weight, block.pwconv1.bias,
                                  chooser),
                        Pointwise(weight, bias, chooser)
                    ]))
            self.stages.append(layers)

    def forward(self, backbone: ConvNeXt,
                x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``backbone(x)``: the normalised maps of its ``out_indices``."""
        outs = []
        for i in range(backbone.out_indices[-1] + 1):
            x = backbone.downsample_layers[i](x)
            for block, (pw1, pw2) in zip(backbone.stages[i], self.stages[i]):
                y = block.act(pw1(block.norm(to_nhwc(block.dwconv(x)))))
                if block.grn is not None:
                    y = block.grn(y)
                x = x + to_nchw(pw2(y))
            if i in backbone.out_indices:
                outs.append(getattr(backbone, f'norm{i}')(x))
        return tuple(outs)
