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
    return F.interpolate(logits[None], size=size, mode='bilinear',
                         align_corners=align_corners)[0]


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
