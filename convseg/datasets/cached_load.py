"""Decode each training file once: loading transforms served from memory.

A small dataset trained for many epochs decodes the same PNGs again every
epoch; on a 2-core CPU that is a noticeable share of a small model's step
(the quickstart: about 15 ms of loading for 16 scenes of 64x64, beside a
step of 120-180 ms). Wrap the loading transforms in :class:`CachedLoad`::

    train_pipeline = [
        dict(type='CachedLoad', transforms=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations')]),
        dict(type='RandomFlip', prob=0.5),
        ...
    ]

The first time a sample's files are seen, the wrapped transforms run and
what they add to the sample (the image, the label map, their shapes) is
kept; after that it is copied from memory. The transforms after it run on
every draw as before, and the wrapped ones must not be random (loading is
not), so training is the same, bit for bit, with or without the cache. The
cache keeps samples until ``max_bytes`` of arrays are held, then serves
those and loads the rest from disk as usual. Each data-loader worker has
its own cache; with ``persistent_workers=False`` it is rebuilt each epoch.
"""
from __future__ import annotations

import copy

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmseg.registry import TRANSFORMS

#: the sample keys that name a sample's files
_FILE_KEYS = ('img_path', 'seg_map_path')


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


@TRANSFORMS.register_module()
class CachedLoad(BaseTransform):
    """Run ``transforms`` once per sample's files; later, copy their output.

    Args:
        transforms: transform configs without randomness, typically
            ``LoadImageFromFile`` and ``LoadAnnotations``.
        max_bytes: at most this many bytes of arrays are kept (default
            2 GiB); samples beyond it are loaded from disk each time.
    """

    def __init__(self, transforms: list, max_bytes: int = 2 << 30) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(
                f'CachedLoad: max_bytes must be a non-negative int, got '
                f'{max_bytes!r}')
        self.transforms = Compose(transforms)
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._cache: dict[tuple, dict] = {}

    def transform(self, results: dict) -> dict | None:
        """The sample with its files loaded, from memory when seen before."""
        key = tuple(str(results.get(k)) for k in _FILE_KEYS)
        added = self._cache.get(key)
        if added is not None:
            results.update(copy.deepcopy(added))
            return results
        before = dict(results)
        out = self.transforms(results)
        if out is None:
            return None
        added = {k: v for k, v in out.items()
                 if k not in before or v is not before[k]
                 or k == 'seg_fields'}
        size = sum(_nbytes(v) for v in added.values())
        if self.held_bytes + size <= self.max_bytes:
            self._cache[key] = copy.deepcopy(added)
            self.held_bytes += size
        return out

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({self.transforms!r}, '
                f'max_bytes={self.max_bytes})')
