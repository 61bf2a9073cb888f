"""Exports of labelling tools to mmseg's layout: COCO, LabelMe, CVAT and
colour masks (``tools/convert_dataset.py``; docs/own_data_formats.md).

Each format module parses its export into a
:class:`~convseg.datasets.converters.core.SourceDataset`, checking it before
anything is written; :func:`write_dataset` writes the images, the label
PNGs, ``classes.json`` and a ready ``config.py``.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

from .coco import read_coco
from .core import (ConversionError, Sample, SourceDataset,  # noqa: F401
                   assign_splits, write_dataset)
from .cvat import read_cvat_xml
from .labelme import LINE_WIDTH, POINT_RADIUS, read_class_list, read_labelme
from .masks import read_cvat_masks, read_masks, read_palette  # noqa: F401
from .raster import IGNORE, Shape, paint, polygon_mask  # noqa: F401

FORMATS = ('coco', 'labelme', 'cvat', 'mask')


def read_export(fmt: str, sources: Sequence[str],
                images: Sequence[str] | None = None,
                palette: str | None = None, classes: str | None = None,
                background: bool = True, crowd_as_class: bool = False,
                skip_unknown: bool = False, skip_missing: bool = False,
                line_width: float = LINE_WIDTH,
                point_radius: float = POINT_RADIUS) -> SourceDataset:
    """Parse an export of ``fmt`` (one of :data:`FORMATS`); see the docs
    page for what ``sources`` and each option mean per format."""
    images = list(images or [])
    if fmt not in FORMATS:
        raise ConversionError(f'unknown format {fmt!r}; use one of {FORMATS}')
    if fmt != 'coco' and len(sources) != 1:
        raise ConversionError(f'{fmt} takes one SOURCE, got {len(sources)}')
    if fmt != 'coco' and len(images) > 1:
        raise ConversionError(f'{fmt} takes one --images folder')
    image_dir = images[0] if images else None
    if fmt == 'coco':
        return read_coco(sources, images, background, crowd_as_class,
                         skip_unknown, skip_missing)
    source = sources[0]
    if fmt == 'labelme':
        return read_labelme(source, read_class_list(classes) if classes
                            else None, background, skip_unknown,
                            skip_missing, line_width, point_radius)
    if fmt == 'cvat':
        if osp.isdir(source):
            return read_cvat_masks(source, background, skip_missing)
        return read_cvat_xml(source, image_dir, background, skip_unknown,
                             skip_missing, line_width, point_radius)
    if palette is None or image_dir is None:
        raise ConversionError(
            'mask needs --palette (labelmap.txt or JSON of name -> [R, G, '
            'B]) and --images DIR')
    return read_masks(source, palette, image_dir, background, skip_missing)


def convert(fmt: str, sources: Sequence[str], out_root: str,
            val_fraction: float = 0.1, seed: int = 0,
            workers: int | None = None, **options) -> dict:
    """Convert an export to ``out_root``; returns the summary counts.

    ``options`` are :func:`read_export`'s. Samples whose export gives no
    split are split by ``val_fraction`` and ``seed``.
    """
    dataset = read_export(fmt, sources, **options)
    assign_splits(dataset.samples, val_fraction, seed)
    return write_dataset(dataset, out_root, workers)
