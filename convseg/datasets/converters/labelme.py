"""LabelMe JSON (one file per image) to label images.

Shapes as LabelMe defines them: ``polygon`` (its points), ``rectangle``
(two opposite corners), ``circle`` (the centre and a point on the circle),
``line`` and ``linestrip`` (drawn ``line_width`` pixels wide, 10 as in
LabelMe's own ``shape_to_mask``), ``point`` and ``points`` (discs of radius
``point_radius``, 5 likewise) and ``mask`` (a base64 PNG over the box of
its two corner points). Overlaps: file order, later shapes on top, as
LabelMe draws them.
"""
from __future__ import annotations

import base64
import io
import os
import os.path as osp
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .core import (ConversionError, Sample, SourceDataset,
                   check_declared_size, class_colours, count_clipped)
from .jsonio import read_json, require
from .raster import Shape

#: LabelMe's default line width and point size (labelme.utils.shape_to_mask)
LINE_WIDTH = 10.0
POINT_RADIUS = 5.0
#: names of LabelMe's labels.txt with a meaning of their own
IGNORE_NAMES = ('__ignore__', )
BACKGROUND_NAMES = ('_background_', 'background')


def read_class_list(path: str) -> list[str]:
    """Class names from a labels.txt (one a line, LabelMe's convention)."""
    with open(path, encoding='utf-8') as f:
        names = [line.strip() for line in f if line.strip()]
    return [n for n in names if n not in IGNORE_NAMES + BACKGROUND_NAMES]


def _shape(entry: dict, label: int, order: int, path: str, index: int,
           line_width: float, point_radius: float) -> Shape:
    where = f'shape {index} ({entry.get("label")!r})'
    kind = entry.get('shape_type') or 'polygon'
    pts = np.asarray(require(entry, 'points', path, where),
                     dtype=np.float64).reshape(-1, 2)
    need = {'polygon': 3, 'rectangle': 2, 'circle': 2, 'line': 2,
            'linestrip': 2, 'point': 1, 'points': 1, 'mask': 2}
    if kind not in need:
        raise ConversionError(
            f'{path}: {where} has shape_type {kind!r}; convseg reads '
            f'{sorted(need)}')
    if len(pts) < need[kind]:
        raise ConversionError(
            f'{path}: {where} is a {kind} with {len(pts)} points; it needs '
            f'{need[kind]}')
    if kind == 'polygon':
        return Shape(label, 'polygon', pts, order)
    if kind == 'rectangle':
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        return Shape(label, 'polygon',
                     np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]),
                     order)
    if kind == 'circle':
        return Shape(label, 'circle', pts[:1], order,
                     radius=float(np.hypot(*(pts[1] - pts[0]))))
    if kind in ('line', 'linestrip'):
        return Shape(label, 'line', pts, order, radius=line_width / 2)
    if kind == 'mask':
        data = require(entry, 'mask', path, where)
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            mask = np.asarray(image.convert('L')) > 0
        return Shape(label, 'mask', np.floor(pts.min(0)), order, mask=mask)
    return Shape(label, 'point', pts, order, radius=point_radius)


def read_labelme(folder: str, classes: Sequence[str] | None = None,
                 background: bool = True, skip_unknown: bool = False,
                 skip_missing: bool = False, line_width: float = LINE_WIDTH,
                 point_radius: float = POINT_RADIUS) -> SourceDataset:
    """Parse every ``*.json`` under ``folder`` (subfolders included).

    ``classes``: the names in id order (default: every label found, sorted);
    with a list, labels outside it raise unless ``skip_unknown``.
    """
    paths = sorted(osp.join(root, name)
                   for root, _, files in os.walk(folder)
                   for name in files if name.endswith('.json'))
    if not paths:
        raise ConversionError(f'{folder} holds no LabelMe .json file')
    files = [(p, read_json(p)) for p in paths]
    for path, d in files:
        for i, entry in enumerate(require(d, 'shapes', path, 'the file')):
            require(entry, 'label', path, f'shape {i}')
    found = sorted({e['label'] for _, d in files for e in d['shapes']} -
                   set(IGNORE_NAMES + BACKGROUND_NAMES))
    names = list(classes) if classes is not None else found
    first = 1 if background else 0
    label_of = {name: first + i for i, name in enumerate(names)}
    label_of.update({n: 255 for n in IGNORE_NAMES})
    if background:
        label_of.update({n: 0 for n in BACKGROUND_NAMES})
    all_names = (['background'] if background else []) + names
    colours = class_colours(len(all_names))
    dataset = SourceDataset(list(zip(all_names, colours)), [], background)
    for path, d in files:
        image_path = osp.join(osp.dirname(path),
                              str(require(d, 'imagePath', path, 'the file'))
                              .replace('\\', '/'))
        if not dataset.has_image(
                image_path, skip_missing,
                f'{path}: imagePath names {image_path}, which does not '
                'exist; put the image beside its JSON or pass --skip-missing'):
            continue
        sample = Sample(osp.splitext(osp.basename(image_path))[0], image_path,
                        int(require(d, 'imageHeight', path, 'the file')),
                        int(require(d, 'imageWidth', path, 'the file')),
                        source=path)
        check_declared_size(sample)
        for order, entry in enumerate(d['shapes']):
            if entry['label'] not in label_of:
                if skip_unknown:
                    dataset.counts['shapes of unknown labels (skipped)'] += 1
                    continue
                raise ConversionError(
                    f'{path}: shape {order} has label {entry["label"]!r}, '
                    f'which is not a class ({names}); add it to the class '
                    'list or pass --skip-unknown')
            sample.shapes.append(_shape(entry, label_of[entry['label']],
                                        order, path, order, line_width,
                                        point_radius))
        dataset.samples.append(sample)
    count_clipped(dataset)
    return dataset
