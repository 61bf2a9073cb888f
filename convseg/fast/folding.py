"""BatchNorm folded into the conv of an mmcv ``ConvModule``."""
from __future__ import annotations

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule

from .errors import UnsupportedModelError
from .kernels import Conv3x3, KernelChooser, Pointwise


def check_conv_module(module: nn.Module, name: str) -> None:
    """Raise UnsupportedModelError unless ``module`` is conv [+ BN] [+ ReLU].
    """
    if not isinstance(module, ConvModule):
        raise UnsupportedModelError(f'{name} is a {type(module).__name__}, '
                                    'not an mmcv ConvModule')
    conv = module.conv
    if (type(conv) is not nn.Conv2d or conv.stride != (1, 1)
            or conv.dilation != (1, 1) or conv.groups != 1
            or conv.padding_mode != 'zeros'
            or conv.kernel_size not in ((1, 1), (3, 3))
            or conv.padding != (conv.kernel_size[0] // 2, ) * 2):
        raise UnsupportedModelError(
            f'{name}.conv must be a plain 1x1 or 3x3 nn.Conv2d (stride 1, '
            f'"same" zero padding, no groups or dilation), got {conv}')
    order = tuple(module.order)
    if module.with_norm:
        norm = module.norm
        if order.index('norm') < order.index('conv'):
            raise UnsupportedModelError(
                f'{name} normalises before its conv (order {order})')
        if (not isinstance(norm, nn.modules.batchnorm._BatchNorm)
                or norm.running_mean is None):
            raise UnsupportedModelError(
                f'{name} normalises with {type(norm).__name__}; only '
                'BatchNorm with running statistics can be folded')
    if module.with_activation:
        if type(module.activate) is not nn.ReLU:
            raise UnsupportedModelError(
                f'{name} activates with {type(module.activate).__name__}; '
                'the fast head supports ReLU')
        if order[-1] != 'act':
            raise UnsupportedModelError(
                f'{name} activates before its conv or norm (order {order})')


def fold_conv_module(module: ConvModule) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (Co, Ci, k, k) and bias (Co,) of conv + eval-mode BatchNorm."""
    conv = module.conv
    weight = conv.weight.detach()
    bias = (conv.bias.detach()
            if conv.bias is not None else weight.new_zeros(weight.shape[0]))
    if module.with_norm:
        bn = module.norm
        scale = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.detach().double()
        shift = -bn.running_mean.detach().double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.detach().double()
        bias = (bias.double() * scale + shift).to(weight.dtype)
        weight = (weight.double() * scale.view(-1, 1, 1, 1)).to(weight.dtype)
    return weight.contiguous(), bias.contiguous()


class FoldedConv(nn.Module):
    """A ConvModule (conv, BatchNorm, ReLU) with its BatchNorm folded in.

    NHWC (N, H, W, Ci) -> (N, H, W, Co): a 1x1 conv goes through
    :class:`Pointwise`, a 3x3 conv through :class:`Conv3x3`, each by the
    kernel ``chooser`` picks.
    """

    def __init__(self, module: ConvModule, chooser: KernelChooser) -> None:
        super().__init__()
        weight, bias = fold_conv_module(module)
        self.relu = module.with_activation
        if weight.shape[-1] == 3:
            self.register_buffer('bias', bias, persistent=False)
            self.conv = Conv3x3(weight, chooser)
        else:
            self.bias = None
            self.conv = Pointwise(weight.flatten(1), bias, chooser)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv + folded BatchNorm (+ ReLU) of NHWC x."""
        if self.bias is None:
            out = self.conv(x)
        else:
            out = self.conv(x, self.bias)
        return out.relu_() if self.relu else out
