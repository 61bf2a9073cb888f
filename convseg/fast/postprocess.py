"""From a segmentor's logits to results, without passes that change nothing.

mmseg's test path runs a single sliding window through the slide
bookkeeping (a zeroed full-resolution sum, the padded window added to it, a
count map, a division by one) and resizes every image's logits to its
original size even where that is the size they already have. Both are
identities on the values: ``0 + x``, ``x / 1`` and a bilinear resize to the
same size give ``x`` back. :func:`single_window_logits` and
:func:`resize_logits` skip them, so the results are those of mmseg's
``EncoderDecoder.inference`` and ``postprocess_result``, bit for bit, at
less cost. :func:`restore_logits` undoes the data preprocessor's padding
and a test-time flip, as ``postprocess_result`` does.
:func:`upsampled_argmax` gives the labels of bilinearly resized logits
without resizing all classes: only pixels along class borders are
interpolated.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def slide_grid(test_cfg, height: int, width: int) -> tuple[int, int]:
    """Rows and columns of windows mmseg's ``slide_inference`` runs on an
    input of ``height`` x ``width`` with ``test_cfg.crop_size`` and
    ``stride``."""
    h_stride, w_stride = test_cfg.stride
    h_crop, w_crop = test_cfg.crop_size
    return (max(height - h_crop + h_stride - 1, 0) // h_stride + 1,
            max(width - w_crop + w_stride - 1, 0) // w_stride + 1)


def single_window_logits(model, inputs: torch.Tensor,
                         batch_img_metas: list[dict]) -> torch.Tensor | None:
    """``model.inference(inputs, batch_img_metas)`` where the model slides a
    single window over ``inputs`` (N, 3, H, W), run as that window's
    ``encode_decode``: equal values, without the full-resolution sum, count
    map and division. None where the model does not slide, or slides more
    than one window. Sets ``batch_img_metas[0]['img_shape']`` as mmseg's
    ``slide_inference`` does."""
    test_cfg = getattr(model, 'test_cfg', None)
    if test_cfg is None or test_cfg.get('mode', 'whole') != 'slide':
        return None
    if slide_grid(test_cfg, *inputs.shape[2:]) != (1, 1):
        return None
    batch_img_metas[0]['img_shape'] = inputs.shape[2:]
    return model.encode_decode(inputs, batch_img_metas)


def unpad(logits: torch.Tensor, meta: dict) -> torch.Tensor:
    """One image's maps (C, H, W) without the data preprocessor's
    padding (a view)."""
    left, right, top, bottom = meta.get(
        'img_padding_size', meta.get('padding_size', [0, 0, 0, 0]))
    height, width = logits.shape[1:]
    return logits[:, top:height - bottom, left:width - right]


def unflip(maps: torch.Tensor, meta: dict) -> torch.Tensor:
    """Maps (C, H, W) flipped back where the test pipeline flipped the
    image (``flip``, ``flip_direction`` of ``meta``)."""
    if not meta.get('flip'):
        return maps
    direction = meta.get('flip_direction')
    if direction not in ('horizontal', 'vertical'):
        raise ValueError(f"flip_direction must be 'horizontal' or "
                         f"'vertical', got {direction!r}")
    return maps.flip(dims=(2, ) if direction == 'horizontal' else (1, ))


def restore_logits(logits: torch.Tensor, meta: dict) -> torch.Tensor:
    """One image's logits (C, H, W) without the data preprocessor's padding
    and flipped back, as mmseg's ``postprocess_result`` does."""
    return unflip(unpad(logits, meta), meta)


def original_size(meta: dict) -> tuple[int, int]:
    """The (H, W) of the image as it was given (``ori_shape``)."""
    return tuple(int(s) for s in meta['ori_shape'][:2])


def resize_logits(logits: torch.Tensor, size: Sequence[int],
                  align_corners: bool) -> torch.Tensor:
    """Bilinear resizing of (C, h, w) logits to ``size``, as mmseg's
    ``resize``; ``logits`` themselves where they are of that size already
    (the values a resize would give)."""
    size = tuple(int(s) for s in size)
    if tuple(logits.shape[1:]) == size:
        return logits
    return F.interpolate(as_batch(logits), size=size, mode='bilinear',
                         align_corners=align_corners)[0]


def as_batch(maps: torch.Tensor) -> torch.Tensor:
    """(C, H, W) maps as a (1, C, H, W) view whose batch stride spans them.
    ``maps[None]`` gives the new dimension the stride C, and PyTorch's
    bilinear kernel then misses its channels-last path: 700 ms instead of
    150 ms to resize 150 channels from 128x128 to 512x512 on 2 threads of
    the development Xeon (the same values)."""
    return maps.as_strided((1, *maps.shape), (maps.numel(), *maps.stride()))


def predictions(model, logits: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """mmseg's ``pred_sem_seg`` and ``seg_logits`` data of one image's
    logits (C, H, W) at its size: the argmax over classes (1, H, W) int64
    and the logits, or for a one-channel head ``sigmoid > threshold`` in
    the logits' dtype and the sigmoid."""
    if logits.shape[0] > 1:
        return logits.argmax(dim=0, keepdim=True), logits
    scores = logits.sigmoid()
    return (scores > model.decode_head.threshold).to(scores), scores


def _source_positions(out_size: int, in_size: int, align_corners: bool
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of ``out_size`` output positions, the two input positions
    bilinear interpolation reads and the weight of the second, as PyTorch
    computes them for ``F.interpolate(size=...)`` (float32)."""
    dst = torch.arange(out_size, dtype=torch.float32)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        scale = torch.tensor(in_size, dtype=torch.float32) / out_size
        src = ((dst + 0.5) * scale - 0.5).clamp(min=0)
    first = src.floor().long().clamp(max=in_size - 1)
    second = (first + 1).clamp(max=in_size - 1)
    return first, second, src - first


def upsampled_argmax(logits: torch.Tensor, size: Sequence[int],
                     align_corners: bool, chunk: int = 4096,
                     most_mixed: float = 0.4) -> torch.Tensor:
    """``F.interpolate(logits[None], size, mode='bilinear').argmax(1)[0]``
    of (C, h, w) logits, an (H, W) int64 label map, without the (C, H, W)
    full-resolution logits.

    A bilinear value is a convex combination of four neighbouring input
    vectors. Where all four have the same argmax class, so has every
    combination of them (each has that class's value at least as high as
    any other's), so that pixel's label is read off the input's own argmax;
    only the pixels whose four neighbours disagree (along class borders)
    are interpolated over all C classes, ``chunk`` pixels at a time. Where
    more than ``most_mixed`` of the pixels disagree (noisy logits), the
    whole resize is cheaper and runs instead. The labels equal the full
    resize's argmax except where its top two values are within float
    rounding of each other.
    """
    height, width = (int(s) for s in size)
    y0, y1, wy = _source_positions(height, logits.shape[1], align_corners)
    x0, x1, wx = _source_positions(width, logits.shape[2], align_corners)
    low = logits.argmax(dim=0)
    top, bottom = low[y0], low[y1]
    labels = top[:, x0]
    mixed = top[:, x1] != labels
    mixed |= bottom[:, x0] != labels
    mixed |= bottom[:, x1] != labels
    rows, cols = mixed.nonzero(as_tuple=True)
    if rows.numel() > most_mixed * labels.numel():
        return resize_logits(logits, size, align_corners).argmax(dim=0)
    # one row of C values per input pixel, gathered whole (a view of
    # channels-last logits)
    table = logits.permute(1, 2, 0).reshape(-1, logits.shape[0])
    step = logits.shape[2]
    for start in range(0, rows.numel(), chunk):
        r, c = rows[start:start + chunk], cols[start:start + chunk]
        ly, lx = wy[r, None], wx[c, None]
        top_row, bottom_row = y0[r] * step, y1[r] * step
        left, right = x0[c], x1[c]
        # PyTorch's CPU kernel's order: (1 - ly) * ((1 - lx) * a + lx * b)
        # + ly * ((1 - lx) * c + lx * d), each gathered row rounded alike
        upper = table[top_row + left].mul_(1 - lx).add_(
            table[top_row + right].mul_(lx))
        lower = table[bottom_row + left].mul_(1 - lx).add_(
            table[bottom_row + right].mul_(lx))
        labels[r, c] = upper.mul_(1 - ly).add_(lower.mul_(ly)).argmax(dim=1)
    return labels
