"""A 3x3 conv of concatenated, bilinearly resized maps, without the concat.

Bilinear resizing acts per channel and a conv per pixel, so the nine taps of
the conv can be applied as one 1x1 conv at each part's own (coarse)
resolution, and the nine resulting maps resized and shifted into place with
small interpolation matrices. The full-resolution concatenation is never
built. A 1x1 conv (:class:`ConcatResizePointwise`) needs no taps: it is
applied to each part at its resolution and its output resized.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule

from .errors import UnsupportedModelError
from .folding import fold_conv_module
from .kernels import Conv3x3, KernelChooser, Pointwise
from .nhwc import resize


def resize_matrix(size_in: int, size_out: int, align_corners: bool,
                  dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(size_out, size_in) matrix of 1-D bilinear resizing.

    Made by resizing the identity with ``F.interpolate`` itself, so its
    weights are those of ``mmseg.models.utils.resize``.
    """
    eye = torch.eye(size_in, dtype=dtype, device=device)
    out = F.interpolate(eye.view(1, size_in, 1, size_in),
                        size=(1, size_out),
                        mode='bilinear',
                        align_corners=align_corners)
    return out[0, :, 0, :].t()


def tap_resize_matrix(size_in: int, size_out: int, align_corners: bool,
                      dtype: torch.dtype,
                      device: torch.device) -> torch.Tensor:
    """(size_out, size_in * 3): resizing, read at offsets -1, 0 and +1.

    Entry (q, 3 * j + t) is the weight of input j in output position
    q + t - 1, and zero where that position is outside the map (the conv's
    zero padding).
    """
    mat = resize_matrix(size_in, size_out, align_corners, dtype, device)
    padded = F.pad(mat, (0, 0, 1, 1))
    shifted = torch.stack([padded[t:t + size_out] for t in range(3)], dim=2)
    return shifted.reshape(size_out, size_in * 3)


def _fold_into(target: nn.Module, module: ConvModule,
               channels: Sequence[int], kernel: int,
               align_corners: bool) -> torch.Tensor:
    """Fold ``module``'s norm into its conv, check that the conv is
    ``kernel`` x ``kernel`` over ``sum(channels)`` channels, and give
    ``target`` its ``bias`` buffer, ``relu`` and ``align_corners``; the
    folded weight."""
    weight, bias = fold_conv_module(module)
    if (weight.shape[1] != sum(channels)
            or tuple(weight.shape[-2:]) != (kernel, kernel)):
        raise UnsupportedModelError(
            f'expected a {kernel}x{kernel} conv over {sum(channels)} = '
            f'{" + ".join(map(str, channels))} channels, got weight '
            f'{tuple(weight.shape)}')
    target.register_buffer('bias', bias, persistent=False)
    target.relu = module.with_activation
    target.align_corners = align_corners
    return weight


class ConcatResizeConv(nn.Module):
    """``module(cat([resize(p, size) for p in parts], 1))`` without the cat.

    ``module`` is a 3x3 ConvModule over the concatenation of maps of
    ``channels[i]`` channels. A part already of the output size is convolved
    with its slice of the weight (:class:`Conv3x3`). A part to be resized
    never is: its nine taps are applied as one 1x1 conv at its own
    resolution h x w, and the nine maps are resized and shifted into place
    by :func:`tap_resize_matrix` GEMMs, along the width, then the height.
    Parts and output are NHWC; the output is (N, H, W, Co), ``size`` (H, W).
    """

    def __init__(self, module: ConvModule, channels: Sequence[int],
                 align_corners: bool,
                 chooser: KernelChooser) -> None:
        super().__init__()
        weight = _fold_into(self, module, channels, 3, align_corners)
        self.parts = nn.ModuleList()
        self.taps = nn.ModuleList()
        start = 0
        for index, width in enumerate(channels):
            part = weight[:, start:start + width]
            start += width
            self.parts.append(Conv3x3(part, chooser))
            # (9 Co, Ci), rows ordered (tx, ty, out channel)
            taps = part.permute(3, 2, 0, 1).reshape(-1, width)
            self.taps.append(Pointwise(taps, None, chooser))

    def _add_resized(self, out: torch.Tensor, index: int,
                     part: torch.Tensor) -> None:
        batch, height, width, out_ch = out.shape
        h, w = part.shape[1:3]
        taps = self.taps[index]
        mx = tap_resize_matrix(w, width, self.align_corners, part.dtype,
                               part.device)
        my = tap_resize_matrix(h, height, self.align_corners, part.dtype,
                               part.device)
        # (3h, H): row ty * h + i, column p -> (H, 3h)
        my = my.view(height, h, 3).permute(0, 2, 1).reshape(height, 3 * h)
        rows = part.new_empty(3, h, width, out_ch)
        for n in range(batch):
            z = taps(part[n:n + 1])
            # z[i, j, tx, ty, o]: for each ty a (3w, Co) matrix per row i,
            # row 3j + tx at stride 3 Co
            z = z.view(h, w, 3, 3, out_ch)
            for ty in range(3):
                torch.matmul(mx,
                             z[:, :, :, ty].reshape(h, 3 * w, out_ch),
                             out=rows[ty])
            out[n].view(height, width * out_ch).addmm_(
                my, rows.view(3 * h, width * out_ch))

    def forward(self, parts: Sequence[torch.Tensor],
                size: Sequence[int]) -> torch.Tensor:
        """Conv (+ folded BN, ReLU) of NHWC parts (N, h_i, w_i, C_i)."""
        size = tuple(int(s) for s in size)
        out = None
        for index, part in enumerate(parts):
            if tuple(part.shape[1:3]) != size:
                continue
            if out is None:
                out = self.parts[index](part, self.bias)
            else:
                out += self.parts[index](part)
        if out is None:
            out = self.bias.expand(parts[0].shape[0], *size, -1).contiguous()
        for index, part in enumerate(parts):
            if tuple(part.shape[1:3]) != size:
                self._add_resized(out, index, part)
        return out.relu_() if self.relu else out


class ConcatResizePointwise(nn.Module):
    """``module(cat([resize(p, size) for p in parts], 1))`` for a 1x1
    ``module``, without the cat: a 1x1 conv and bilinear resizing commute,
    so each part is convolved with its slice of the weight at its own
    resolution and only its ``Co`` output channels are resized. Parts and
    output are NHWC; the output is (N, H, W, Co), ``size`` (H, W).
    """

    def __init__(self, module: ConvModule, channels: Sequence[int],
                 align_corners: bool, chooser: KernelChooser) -> None:
        super().__init__()
        weight = _fold_into(self, module, channels, 1, align_corners)
        bounds = torch.tensor([0, *channels]).cumsum(0).tolist()
        self.parts = nn.ModuleList(
            Pointwise(weight[:, start:end].flatten(1), None, chooser)
            for start, end in zip(bounds, bounds[1:]))

    def forward(self, parts: Sequence[torch.Tensor],
                size: Sequence[int]) -> torch.Tensor:
        """Conv (+ folded BN, ReLU) of NHWC parts (N, h_i, w_i, C_i)."""
        size = tuple(int(s) for s in size)
        out = None
        for conv, part in zip(self.parts, parts):
            mapped = conv(part)
            if tuple(part.shape[1:3]) != size:
                mapped = resize(mapped, size, self.align_corners)
            out = mapped if out is None else out.add_(mapped)
        out.add_(self.bias)
        return out.relu_() if self.relu else out
