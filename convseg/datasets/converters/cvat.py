"""CVAT for images 1.1 XML to label images.

Shapes as CVAT defines them: ``box`` (``xtl, ytl, xbr, ybr``; rotated
boxes turn by ``rotation`` degrees about their centre), ``polygon``
(``points="x,y;x,y;..."``), ``polyline`` (drawn ``line_width`` pixels wide),
``points`` (discs of ``point_radius``) and ``mask`` (``rle`` runs of 0s then
1s, row by row, over the ``left, top, width, height`` box). Overlaps:
``z_order``, higher on top; equal ``z_order`` keeps the file order. An
image's ``subset`` attribute gives its split (Train / Validation...).
CVAT's "Segmentation mask 1.1" export (colour PNGs and ``labelmap.txt``) is
read by :func:`convseg.datasets.converters.masks.read_cvat_masks`.
"""
from __future__ import annotations

import os.path as osp
import xml.etree.ElementTree as ET

import numpy as np

from .core import (ConversionError, Sample, SourceDataset,
                   check_declared_size, class_colours, count_clipped)
from .labelme import LINE_WIDTH, POINT_RADIUS
from .raster import Shape, ShapeError, decode_runs

#: CVAT subset names -> our splits
SUBSETS = {'train': 'train', 'training': 'train', 'val': 'val',
           'valid': 'val', 'validation': 'val', 'test': 'val'}


def _colour(text: str | None) -> tuple[int, int, int] | None:
    if not text or not text.startswith('#') or len(text) != 7:
        return None
    return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))


def _points(text: str, path: str, where: str) -> np.ndarray:
    try:
        return np.array([[float(v) for v in pair.split(',')]
                         for pair in text.split(';')], dtype=np.float64)
    except ValueError as err:
        raise ConversionError(
            f'{path}: {where} has points {text[:60]!r}; CVAT writes '
            '"x,y;x,y;..."') from err


def _box(el: ET.Element) -> np.ndarray:
    x0, y0, x1, y1 = (float(el.get(k)) for k in ('xtl', 'ytl', 'xbr', 'ybr'))
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    angle = np.deg2rad(float(el.get('rotation', 0)))
    if angle:
        centre = corners.mean(0)
        rot = np.array([[np.cos(angle), -np.sin(angle)],
                        [np.sin(angle), np.cos(angle)]])
        corners = (corners - centre) @ rot.T + centre
    return corners


def _shape(el: ET.Element, label: int, order: float, path: str, where: str,
           line_width: float, point_radius: float) -> Shape:
    if el.tag == 'box':
        return Shape(label, 'polygon', _box(el), order)
    if el.tag == 'polygon':
        return Shape(label, 'polygon', _points(el.get('points', ''), path,
                                               where), order)
    if el.tag == 'polyline':
        return Shape(label, 'line', _points(el.get('points', ''), path,
                                            where), order,
                     radius=line_width / 2)
    if el.tag == 'points':
        return Shape(label, 'point', _points(el.get('points', ''), path,
                                             where), order,
                     radius=point_radius)
    left, top, width, height = (int(float(el.get(k))) for k in
                                ('left', 'top', 'width', 'height'))
    try:
        runs = [int(v) for v in el.get('rle', '').split(',')]
        mask = decode_runs(runs, height, width, column_major=False)
    except (ValueError, ShapeError) as err:
        raise ConversionError(f'{path}: {where}: bad mask rle ({err})') \
            from err
    return Shape(label, 'mask', np.array([left, top]), order, mask=mask)


def read_cvat_xml(path: str, images: str | None = None,
                  background: bool = True, skip_unknown: bool = False,
                  skip_missing: bool = False, line_width: float = LINE_WIDTH,
                  point_radius: float = POINT_RADIUS) -> SourceDataset:
    """Parse a CVAT for images 1.1 ``annotations.xml``.

    ``images``: the image folder (default: ``images/`` beside the XML, as
    CVAT's zip has it, else the XML's folder).
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        line, column = err.position
        raise ConversionError(
            f'{path}: malformed XML at line {line}, column {column + 1}: '
            f'{err.msg if hasattr(err, "msg") else err}; export the file '
            'again') from err
    if root.tag != 'annotations':
        raise ConversionError(
            f'{path}: the root element is <{root.tag}>, CVAT for images 1.1 '
            'writes <annotations>')
    labels = root.findall('./meta/*/labels/label')
    names = [el.findtext('name') for el in labels]
    if not names:
        raise ConversionError(
            f'{path}: no <meta>/<task|project|job>/<labels> found; export '
            'as "CVAT for images 1.1"')
    colours = [_colour(el.findtext('color')) for el in labels]
    first = 1 if background else 0
    label_of = {name: first + i for i, name in enumerate(names)}
    spare = iter(class_colours(len(names) + 1)[1:])
    classes = ([('background', (0, 0, 0))] if background else []) + [
        (name, colour or next(spare)) for name, colour in zip(names, colours)]
    dataset = SourceDataset(classes, [], background)
    if images is None:
        beside = osp.join(osp.dirname(osp.abspath(path)), 'images')
        images = beside if osp.isdir(beside) else \
            osp.dirname(osp.abspath(path))
    for img in root.iter('image'):
        name = img.get('name', '')
        where = f'<image id="{img.get("id")}" name="{name}">'
        subset = (img.get('subset') or '').lower()
        sample = Sample(osp.splitext(osp.basename(name))[0],
                        osp.join(images, name), int(img.get('height', 0)),
                        int(img.get('width', 0)), SUBSETS.get(subset),
                        source=f'{path} {where}')
        if not dataset.has_image(
                sample.image, skip_missing,
                f'{path}: {where} is not in {images}; point --images at the '
                'image folder or pass --skip-missing'):
            continue
        check_declared_size(sample)
        for index, el in enumerate(img):
            if el.tag not in ('box', 'polygon', 'polyline', 'points',
                              'mask'):
                continue
            label = el.get('label')
            if label not in label_of:
                if skip_unknown:
                    dataset.counts['shapes of unknown labels (skipped)'] += 1
                    continue
                raise ConversionError(
                    f'{path}: {where} has a <{el.tag}> of label {label!r}, '
                    f'which <meta> does not list ({names}); pass '
                    '--skip-unknown to leave it out')
            # z_order first, file order within one z_order
            order = int(el.get('z_order', 0)) + index / (len(img) + 1)
            sample.shapes.append(_shape(el, label_of[label], order, path,
                                        f'{where} <{el.tag}> {index}',
                                        line_width, point_radius))
        dataset.samples.append(sample)
    count_clipped(dataset)
    return dataset
