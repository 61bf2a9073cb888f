"""Inference fast path for UPerNet segmentors.

:func:`prepare_for_inference` turns an eval-mode mmseg ``EncoderDecoder`` into
one that computes the same logits faster. It is for inference only: it
refuses a model in training mode, and the prepared model refuses to train.

On CPU (float32) the decode head, an mmseg ``UPerHead``, is replaced in the
forward pass by :class:`FastUPerHead`, which computes the same function with
fewer multiplications:

* BatchNorm folded into the preceding conv of every ConvModule;
* 3x3 convs (``fpn_convs``, the full-resolution part of ``fpn_bottleneck``
  and of the PPM ``bottleneck``) by Winograd's minimal filtering
  F(4x4, 3x3), 2.25 multiplications per output instead of 9, as GEMMs,
  where :func:`winograd_pays` for the map;
* a 3x3 conv of upsampled maps (the coarse parts of ``fpn_bottleneck`` and
  of the PPM ``bottleneck``) without upsampling the input: bilinear resizing
  acts per channel and the conv per pixel, so the conv's nine taps are
  applied as one 1x1 conv at the coarse resolution and the nine resulting
  maps are resized and shifted into place with small interpolation matrices;
  the concatenated full-resolution input is never built;
* channels-last maps throughout, so 1x1 convs are plain GEMMs, and
  channels-last logits, which the resizing after the head reads faster.

The parameters of the model are not changed (the folded weights are derived
buffers that are not saved), so its state dict is that of the plain model.

On GPU it sets up mixed precision (bf16 or fp16 autocast, logits returned in
float32), channels-last memory format, ``cudnn.benchmark`` and, on request,
``torch.compile`` of the backbone. That path has not been timed on a GPU.
The measurements behind each piece are in the README.
"""
from __future__ import annotations

import logging
import math
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.logging import print_log
from mmseg.models.decode_heads import UPerHead
from mmseg.models.segmentors import EncoderDecoder

TRAINING_ERROR = (
    'prepare_for_inference() makes an inference-only model, but this model '
    'is in training mode; call model.eval() first, and never prepare a '
    'model that will be trained.')
PREPARED_TRAINING_ERROR = (
    'this model was prepared for inference by '
    'convseg.apis.fast.prepare_for_inference() and cannot train or run in '
    'training mode; build a fresh model to train.')
STALE_WEIGHTS_ERROR = (
    'this model was prepared for inference by '
    'convseg.apis.fast.prepare_for_inference(), which derives its fast '
    'weights from the weights it had then; load weights before preparing '
    '(convseg.apis.init_model does), or build a fresh model.')

#: output tile m of Winograd's F(m x m, 3 x 3) and its m + 1 finite
#: interpolation points (infinity is the last): relative errors near 1e-5
#: in float32.
WINOGRAD_TILE = 4
WINOGRAD_POINTS = (0, 1, -1, 2, -2)

#: Winograd replaces a 3x3 conv when both channel counts are at least this
#: and the map has at least this many pixels per image. Measured on one
#: core (x86-64, AVX-512, MKL): 1.5x to 2.9x faster than mkldnn's direct
#: conv for 512 -> 512 channels from 16x16 to 128x128 maps, at batch 1 and
#: 2, 2.7x for 2048 -> 512 at 128x128; 1.1x to 1.9x for 64 and 128
#: channels; slower for 32.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_PIXELS = 16 * 16

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


class UnsupportedModelError(ValueError):
    """A model or head the fast path has no fast version of."""


# --------------------------------------------------------------------------
# Winograd F(m x m, 3 x 3)
# --------------------------------------------------------------------------


def _poly_from_roots(roots: Sequence[Fraction]) -> List[Fraction]:
    """Coefficients, lowest power first, of prod (x - root)."""
    coeffs = [Fraction(1)]
    for root in roots:
        shifted = [Fraction(0)] + coeffs
        coeffs = [s - root * c for s, c in zip(shifted, coeffs + [0])]
    return coeffs


def toom_cook_matrices(m: int,
                       points: Sequence[int]) -> Tuple[torch.Tensor, ...]:
    """Exact Winograd F(m, 3) matrices (A^T, G, B^T) as float64 tensors.

    For the 1-D correlation ``y[k] = sum_j g[j] d[k + j]`` of a tile ``d``
    of n = m + 2 inputs, ``y = A^T ((G g) * (B^T d))``; A^T is (m, n), G is
    (n, 3), B^T is (n, n). ``points`` are the n - 1 finite interpolation
    points of the Toom-Cook construction, infinity being the last.
    """
    n = m + 2
    pts = [Fraction(p) for p in points]
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        raise ValueError(f'F({m}, 3) needs {n - 1} distinct points, got '
                         f'{list(points)}')
    a_t = [[p**k for p in pts] + [Fraction(int(k == m - 1))] for k in range(m)]
    g = []
    b_t = []
    for i, p in enumerate(pts):
        others = pts[:i] + pts[i + 1:]
        scale = math.prod((p - q for q in others), start=Fraction(1))
        g.append([p**j / scale for j in range(3)])
        b_t.append(_poly_from_roots(others) + [Fraction(0)])
    g.append([Fraction(0), Fraction(0), Fraction(1)])
    b_t.append(_poly_from_roots(pts))

    def tensor(rows: List[List[Fraction]]) -> torch.Tensor:
        return torch.tensor([[float(v) for v in row] for row in rows],
                            dtype=torch.float64)

    return tensor(a_t), tensor(g), tensor(b_t)


_TRANSFORMS: Dict[tuple, Tuple[torch.Tensor, torch.Tensor]] = {}


def _winograd_transforms(dtype: torch.dtype,
                         device: torch.device) -> Tuple[torch.Tensor, ...]:
    """(B^T kron B^T (n*n, n*n), A^T kron A^T (m*m, n*n)) of F(m x m, 3x3)."""
    key = (dtype, str(device))
    if key not in _TRANSFORMS:
        a_t, _, b_t = toom_cook_matrices(WINOGRAD_TILE, WINOGRAD_POINTS)
        _TRANSFORMS[key] = (torch.kron(b_t, b_t).to(device, dtype),
                            torch.kron(a_t, a_t).to(device, dtype))
    return _TRANSFORMS[key]


def winograd_filters(weight: torch.Tensor) -> torch.Tensor:
    """Transformed 3x3 filters: (Co, Ci, 3, 3) -> (n*n, Ci, Co), n = m + 2."""
    _, g, _ = toom_cook_matrices(WINOGRAD_TILE, WINOGRAD_POINTS)
    g = g.to(weight.device)
    u = torch.einsum('ai,ocij,bj->abco', g, weight.detach().double(), g)
    n = WINOGRAD_TILE + 2
    return u.reshape(n * n, weight.shape[1],
                     weight.shape[0]).to(weight.dtype).contiguous()


def winograd_conv3x3(x: torch.Tensor,
                     filters: torch.Tensor,
                     bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """3x3 conv (stride 1, zero padding 1) of NHWC maps by Winograd.

    ``x`` (N, H, W, Ci) contiguous, ``filters`` from
    :func:`winograd_filters` (n*n, Ci, Co); returns (N, H, W, Co), plus
    ``bias`` (Co,) if given. The zero-padded input is cut into overlapping
    n x n tiles at stride m; the tiles are transformed by one GEMM,
    multiplied by the filters as n*n GEMMs over all tiles of the batch, and
    transformed back by one GEMM.
    """
    m, n = WINOGRAD_TILE, WINOGRAD_TILE + 2
    b_kron, a_kron = _winograd_transforms(x.dtype, x.device)
    batch, height, width, in_ch = x.shape
    out_ch = filters.shape[2]
    rows, cols = -(-height // m), -(-width // m)
    # zero padding: 1 before, up to a whole number of tiles after
    xp = x.new_empty(batch, rows * m + 2, cols * m + 2, in_ch)
    xp[:, 0] = 0
    xp[:, height + 1:] = 0
    xp[:, :, 0] = 0
    xp[:, :, width + 1:] = 0
    xp[:, 1:height + 1, 1:width + 1] = x
    s_n, s_h, s_w, _ = xp.stride()
    tiles = xp.as_strided((n, n, batch, rows, cols, in_ch),
                          (s_h, s_w, s_n, m * s_h, m * s_w, 1))
    tiles = tiles.contiguous().view(n * n, -1)
    v = torch.mm(b_kron, tiles).view(n * n, -1, in_ch)
    prod = torch.bmm(v, filters).view(n * n, -1)
    y = torch.mm(a_kron, prod).view(m, m, batch, rows, cols, out_ch)
    y = y.permute(2, 3, 0, 4, 1, 5)
    out = x.new_empty(batch, rows * m, cols * m, out_ch)
    out6 = out.view(batch, rows, m, cols, m, out_ch)
    if bias is None:
        out6.copy_(y)
    else:
        torch.add(y, bias, out=out6)
    if rows * m != height or cols * m != width:
        out = out[:, :height, :width].contiguous()
    return out


def winograd_pays(in_ch: int, out_ch: int, height: int, width: int) -> bool:
    """The measured rule: Winograd beats the default 3x3 conv on this shape."""
    return (min(in_ch, out_ch) >= WINOGRAD_MIN_CHANNELS
            and height * width >= WINOGRAD_MIN_PIXELS)


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> contiguous (N, H, W, C), a view of channels-last x."""
    return x.permute(0, 2, 3, 1).contiguous()


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) -> (N, C, H, W) view in channels-last memory format."""
    return x.permute(0, 3, 1, 2)


class Conv3x3(nn.Module):
    """3x3 conv (stride 1, padding 1) of NHWC maps, by Winograd where it pays.

    (N, H, W, Ci) -> (N, H, W, Co). ``winograd``: True always, False never,
    None per call by :func:`winograd_pays`. The transformed filters are
    made on first use (per device) and kept.
    """

    def __init__(self, weight: torch.Tensor, winograd: Optional[bool]) -> None:
        super().__init__()
        self.register_buffer('weight',
                             weight.detach().contiguous(),
                             persistent=False)
        self.winograd = winograd
        self._filters: Dict[tuple, torch.Tensor] = {}

    def uses_winograd(self, x: torch.Tensor) -> bool:
        """Whether the call on NHWC ``x`` goes through Winograd."""
        if self.winograd is None:
            return winograd_pays(x.shape[3], self.weight.shape[0],
                                 *x.shape[1:3])
        return self.winograd

    def forward(self,
                x: torch.Tensor,
                bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Convolve x; add ``bias`` (Co,) if given."""
        if not self.uses_winograd(x):
            return to_nhwc(F.conv2d(to_nchw(x), self.weight, bias, padding=1))
        key = (str(self.weight.device), self.weight.dtype)
        if key not in self._filters:
            self._filters[key] = winograd_filters(self.weight)
        return winograd_conv3x3(x, self._filters[key], bias)


# --------------------------------------------------------------------------
# Folded ConvModules
# --------------------------------------------------------------------------


def _check_conv_module(module: nn.Module, name: str) -> None:
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


def fold_conv_module(module: ConvModule) -> Tuple[torch.Tensor, torch.Tensor]:
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

    NHWC (N, H, W, Ci) -> (N, H, W, Co): a 1x1 conv is one GEMM, a 3x3 conv
    goes through :class:`Conv3x3`.
    """

    def __init__(self, module: ConvModule, winograd: Optional[bool]) -> None:
        super().__init__()
        weight, bias = fold_conv_module(module)
        self.register_buffer('bias', bias, persistent=False)
        self.relu = module.with_activation
        if weight.shape[-1] == 3:
            self.conv = Conv3x3(weight, winograd)
        else:
            self.conv = None
            self.register_buffer('matrix',
                                 weight.flatten(1).t().contiguous(),
                                 persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv + folded BatchNorm (+ ReLU) of NHWC x."""
        if self.conv is None:
            out = torch.addmm(self.bias, x.reshape(-1, x.shape[3]),
                              self.matrix).view(*x.shape[:3], -1)
        else:
            out = self.conv(x, self.bias)
        return out.relu_() if self.relu else out


# --------------------------------------------------------------------------
# 3x3 conv of concatenated, resized maps
# --------------------------------------------------------------------------


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


def resize(x: torch.Tensor, size: Sequence[int],
           align_corners: bool) -> torch.Tensor:
    """Bilinear resizing of NHWC maps to ``size`` (H, W), as mmseg's resize."""
    return to_nhwc(
        F.interpolate(to_nchw(x),
                      size=tuple(size),
                      mode='bilinear',
                      align_corners=align_corners))


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
                 align_corners: bool, winograd: Optional[bool]) -> None:
        super().__init__()
        weight, bias = fold_conv_module(module)
        if weight.shape[1] != sum(channels) or weight.shape[-1] != 3:
            raise UnsupportedModelError(
                f'expected a 3x3 conv over {sum(channels)} = '
                f'{" + ".join(map(str, channels))} channels, got weight '
                f'{tuple(weight.shape)}')
        self.register_buffer('bias', bias, persistent=False)
        self.relu = module.with_activation
        self.align_corners = align_corners
        self.parts = nn.ModuleList()
        start = 0
        for index, width in enumerate(channels):
            part = weight[:, start:start + width]
            start += width
            self.parts.append(Conv3x3(part, winograd))
            # (Ci, 9 Co), columns ordered (tx, ty, out channel)
            taps = part.permute(1, 3, 2, 0).reshape(width, -1)
            self.register_buffer(f'taps{index}',
                                 taps.contiguous(),
                                 persistent=False)

    def _add_resized(self, out: torch.Tensor, index: int,
                     part: torch.Tensor) -> None:
        batch, height, width, out_ch = out.shape
        _, h, w, in_ch = part.shape
        taps = getattr(self, f'taps{index}')
        mx = tap_resize_matrix(w, width, self.align_corners, part.dtype,
                               part.device)
        my = tap_resize_matrix(h, height, self.align_corners, part.dtype,
                               part.device)
        # (3h, H): row ty * h + i, column p -> (H, 3h)
        my = my.view(height, h, 3).permute(0, 2, 1).reshape(height, 3 * h)
        rows = part.new_empty(3, h, width, out_ch)
        for n in range(batch):
            z = torch.mm(part[n].reshape(h * w, in_ch), taps)
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


# --------------------------------------------------------------------------
# UPerHead
# --------------------------------------------------------------------------


class FastUPerHead(nn.Module):
    """The forward pass of an mmseg ``UPerHead`` (eval mode) with fast parts.

    Takes the backbone's feature maps (N, C_i, H_i, W_i), returns the class
    logits (N, num_classes, H_0, W_0) at the resolution of the first selected
    map, as ``UPerHead.forward`` does, in channels-last memory format. Runs
    channels-last inside. Built from a UPerHead whose ConvModules are
    conv + BatchNorm + ReLU; the parameters stay in the head.
    """

    def __init__(self, head: UPerHead, winograd: Optional[bool]) -> None:
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
            _check_conv_module(module, f'decode_head.{name}')
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
            FoldedConv(m, winograd) for m in head.lateral_convs)
        self.fpn_convs = nn.ModuleList(
            FoldedConv(m, winograd) for m in head.fpn_convs)
        self.psp_convs = nn.ModuleList(
            FoldedConv(ppm[1], winograd) for ppm in head.psp_modules)
        self.psp_bottleneck = ConcatResizeConv(
            head.bottleneck,
            [head.in_channels[-1]] + [channels] * len(self.pool_scales),
            self.align_corners, winograd)
        self.fpn_bottleneck = ConcatResizeConv(
            head.fpn_bottleneck, [channels] * len(head.in_channels),
            self.align_corners, winograd)
        self.register_buffer('seg_matrix',
                             conv_seg.weight.detach().flatten(1).t(),
                             persistent=False)
        self.register_buffer(
            'seg_bias',
            conv_seg.bias.detach() if conv_seg.bias is not None else None,
            persistent=False)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits (N, num_classes, H_0, W_0) from the backbone's maps."""
        feats = [to_nhwc(inputs[i]) for i in self.in_index]
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
        flat = feat.reshape(-1, feat.shape[3])
        if self.seg_bias is None:
            logits = torch.mm(flat, self.seg_matrix)
        else:
            logits = torch.addmm(self.seg_bias, flat, self.seg_matrix)
        return to_nchw(logits.view(*feat.shape[:3], -1))


# --------------------------------------------------------------------------
# The segmentor
# --------------------------------------------------------------------------


class FastEncoderDecoder(EncoderDecoder):
    """An ``EncoderDecoder`` prepared by :func:`prepare_for_inference`.

    Same inputs and outputs as the plain model in ``predict``/``inference``/
    ``tensor`` modes; ``fast_head`` (a :class:`FastUPerHead`, or None) stands
    in for the decode head's forward, ``fast_amp`` (a dtype or None) runs the
    backbone and head under autocast, ``fast_channels_last`` feeds the
    backbone channels-last images. Training raises a RuntimeError.
    """

    fast_head: Optional[FastUPerHead]
    fast_amp: Optional[torch.dtype]
    fast_channels_last: bool

    def _fast_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError(PREPARED_TRAINING_ERROR)
        if self.fast_channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(inputs.device.type,
                            dtype=self.fast_amp,
                            enabled=self.fast_amp is not None):
            feats = self.extract_feat(inputs)
            if self.fast_head is not None:
                logits = self.fast_head(feats)
            else:
                logits = self.decode_head.forward(feats)
        return logits.float()

    def encode_decode(self, inputs: torch.Tensor,
                      batch_img_metas: List[dict]) -> torch.Tensor:
        """Logits (N, num_classes, H, W) of images (N, C, H, W)."""
        return self.decode_head.predict_by_feat(self._fast_logits(inputs),
                                                batch_img_metas)

    def _forward(self,
                 inputs: torch.Tensor,
                 data_samples: Optional[list] = None) -> torch.Tensor:
        return self._fast_logits(inputs)

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        """Refuse: a prepared model is for inference only."""
        raise RuntimeError(PREPARED_TRAINING_ERROR)


def _refuse_loading(*args, **kwargs) -> None:
    raise RuntimeError(STALE_WEIGHTS_ERROR)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device('cpu')


def prepare_for_inference(model: nn.Module,
                          enable: bool = True,
                          *,
                          winograd: Optional[bool] = None,
                          amp: Optional[str] = None,
                          channels_last: Optional[bool] = None,
                          compile: bool = False) -> nn.Module:
    """Make an eval-mode ``EncoderDecoder`` compute its logits faster.

    Returns ``model`` itself, its class changed to
    :class:`FastEncoderDecoder`; with ``enable=False`` returns it untouched.
    Prepare after loading weights: loading weights into a prepared model
    raises. Raises RuntimeError if the model, or any of its modules, is in
    training mode.

    Args:
        model: an mmseg ``EncoderDecoder`` in eval mode. Other segmentors,
            and heads the fast head does not cover, are left unchanged
            (with a warning) unless a GPU option applies.
        enable: False returns the model as it is.
        winograd: CPU float32 only: True runs every 3x3 conv of the head by
            Winograd, False none, None (default) where
            :func:`winograd_pays` for the call's shape.
        amp: 'bf16' or 'fp16' autocast (logits come back as float32), or
            'none'. Default: 'bf16' on a GPU that supports it, else 'fp16';
            'none' on CPU. With autocast the fp32 fast head is not used.
        channels_last: feed the backbone channels-last images and store its
            weights so. Default: on for GPU, off for CPU (no gain measured).
        compile: ``torch.compile`` the backbone (in place).
    """
    if not enable:
        return model
    if any(module.training for module in model.modules()):
        raise RuntimeError(TRAINING_ERROR)
    if isinstance(model, FastEncoderDecoder):
        print_log('the model is already prepared for inference',
                  logger='current',
                  level=logging.INFO)
        return model
    if type(model) is not EncoderDecoder:
        print_log(
            f'no fast inference path for a {type(model).__name__} '
            '(only mmseg EncoderDecoder); leaving the model unchanged',
            logger='current',
            level=logging.WARNING)
        return model
    device = _model_device(model)
    on_gpu = device.type == 'cuda'
    if amp is None:
        amp = (('bf16' if torch.cuda.is_bf16_supported() else 'fp16')
               if on_gpu else 'none')
    if amp != 'none' and amp not in AMP_DTYPES:
        raise ValueError(f"amp must be 'bf16', 'fp16' or 'none', got "
                         f'{amp!r}')
    if channels_last is None:
        channels_last = on_gpu
    fast_head = None
    notes = []
    head = model.decode_head
    if amp == 'none' and device.type == 'cpu':
        try:
            if type(head) is not UPerHead:
                raise UnsupportedModelError(
                    f'the decode head is a {type(head).__name__}')
            fast_head = FastUPerHead(head, winograd).to(device)
            notes.append('UPerHead with folded BatchNorm, Winograd 3x3 convs '
                         f'({"by shape" if winograd is None else winograd}) '
                         'and resized parts at their own resolution')
        except UnsupportedModelError as err:
            print_log(f'no fast head: {err}; the decode head runs as it is',
                      logger='current',
                      level=logging.WARNING)
    if amp != 'none':
        notes.append(f'{amp} autocast')
    if channels_last:
        model.backbone.to(memory_format=torch.channels_last)
        notes.append('channels-last')
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        notes.append('cudnn.benchmark')
    if compile:
        model.backbone.compile()
        notes.append('torch.compile (backbone)')
    if not notes:
        print_log(
            'nothing to speed up on this model and device; leaving it '
            'unchanged',
            logger='current',
            level=logging.WARNING)
        return model
    model.__class__ = FastEncoderDecoder
    model.fast_head = fast_head
    model.fast_amp = AMP_DTYPES.get(amp)
    model.fast_channels_last = channels_last
    model.register_load_state_dict_pre_hook(_refuse_loading)
    print_log('fast inference: ' + ', '.join(notes),
              logger='current',
              level=logging.INFO)
    return model
