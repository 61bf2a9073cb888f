"""What an exported graph takes and gives, shared by every backend.

A graph takes ``image``: float32 (N, 3, H, W), RGB, 0..255, not normalised,
and gives ``logits``: float32 (N, num_classes, H, W) at the input's size and
``labels``: int64 (N, H, W). The class names and palette travel with the
file as JSON strings under the keys ``classes`` and ``palette``.
:func:`compare_outputs` measures a backend's outputs against PyTorch's.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from mmseg.models.segmentors import EncoderDecoder

INPUT_NAME = 'image'
OUTPUT_NAMES = ('logits', 'labels')


def head_threshold(head: object) -> float:
    """A one-channel head's sigmoid threshold (mmseg's default 0.3)."""
    threshold = getattr(head, 'threshold', None)
    return 0.3 if threshold is None else float(threshold)


def metadata_strings(meta: dict) -> dict[str, str]:
    """``dataset_meta``'s classes and palette as JSON strings (keys that
    are empty or missing are left out)."""
    values = dict(classes=[str(c) for c in meta.get('classes', ())],
                  palette=[[int(v) for v in color]
                           for color in meta.get('palette', ())])
    return {key: json.dumps(value) for key, value in values.items() if value}


def parse_metadata(props: dict[str, str]) -> dict[str, Any]:
    """``dataset_meta`` (classes tuple, palette list of tuples) from a
    file's metadata as a dict of strings; {} without them."""
    meta: dict[str, Any] = {}
    if 'classes' in props:
        meta['classes'] = tuple(json.loads(props['classes']))
    if 'palette' in props:
        meta['palette'] = [tuple(c) for c in json.loads(props['palette'])]
    return meta


def reference_logits(model: EncoderDecoder,
                     images: torch.Tensor) -> torch.Tensor:
    """The PyTorch model's logits of RGB 0..255 ``images`` (N, 3, H, W),
    through its own data preprocessor and ``encode_decode``, as mmseg's test
    path runs it on BGR images."""
    bgr = [image.flip(0) for image in images]
    height, width = images.shape[2:]
    data = model.data_preprocessor(dict(inputs=bgr), False)
    metas = [dict(img_shape=(height, width), pad_shape=(height, width),
                  ori_shape=(height, width)) for _ in bgr]
    with torch.no_grad():
        return model.encode_decode(data['inputs'], metas).float().cpu()


def compare_outputs(model: EncoderDecoder, images: torch.Tensor,
                    logits: np.ndarray, labels: np.ndarray
                    ) -> dict[str, float]:
    """How far a backend's ``logits`` and ``labels`` of RGB 0..255
    ``images`` are from the PyTorch model's: ``max_rel_diff`` (max
    |backend - torch| / max |torch| of the logits) and ``agreement``
    (fraction of pixels with the PyTorch model's label)."""
    expected = reference_logits(model, images)
    if expected.shape[1] == 1:
        expected_labels = (expected[:, 0].sigmoid()
                           > head_threshold(model.decode_head)).long()
    else:
        expected_labels = expected.argmax(dim=1)
    diff = np.abs(logits - expected.numpy()).max()
    return dict(max_rel_diff=float(diff / np.abs(expected.numpy()).max()),
                agreement=float((labels == expected_labels.numpy()).mean()))
