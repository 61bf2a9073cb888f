"""COCO instance JSON (polygons, RLE, uncompressed RLE) to label images.

Overlaps: COCO files carry no drawing order (annotations are listed by id,
which is the order of export, not of drawing), so the smaller region is
painted on top: a cup annotated on a table stays a cup whatever the order
of the two annotations. Regions of equal area keep the file order (later on
top). Crowd regions (``iscrowd: 1``) are painted last, as ignored pixels,
unless ``crowd_as_class``.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

import numpy as np

from .core import (ConversionError, Sample, SourceDataset,
                   check_declared_size, class_colours, count_clipped)
from .jsonio import read_json, require
from .raster import (IGNORE, Shape, ShapeError, coco_rle_counts,
                     decode_runs)


def _split_of(path: str, many: bool) -> str | None:
    """train / val from a file name when there are several files."""
    if not many:
        return None
    name = osp.basename(path).lower()
    for split, words in (('val', ('val', 'valid', 'test')),
                         ('train', ('train', ))):
        if any(word in name for word in words):
            return split
    raise ConversionError(
        f'{path}: with several COCO files each name must say its split '
        '("train" or "val" in the file name)')


def _shapes(ann: dict, label: int, order: int, height: int, width: int,
            path: str) -> list[Shape]:
    seg = ann.get('segmentation')
    where = f'{path}: annotation id {ann.get("id")}'
    if isinstance(seg, list):
        shapes = []
        for poly in seg:
            pts = np.asarray(poly, dtype=np.float64)
            if pts.ndim != 1 or len(pts) < 6 or len(pts) % 2:
                raise ConversionError(
                    f'{where}: a polygon needs an even list of 6 or more '
                    f'numbers (x, y, ...), got {len(pts)}')
            shapes.append(Shape(label, 'polygon', pts.reshape(-1, 2), order))
        return shapes
    if isinstance(seg, dict):
        size = require(seg, 'size', path, f'annotation id {ann.get("id")}')
        counts = require(seg, 'counts', path,
                         f'annotation id {ann.get("id")}')
        h, w = (int(v) for v in size)
        if (h, w) != (height, width):
            raise ConversionError(
                f'{where}: the RLE is {w} x {h} but its image is {width} x '
                f'{height}')
        try:
            runs = coco_rle_counts(counts) if isinstance(counts, str) \
                else counts
            mask = decode_runs(runs, h, w, column_major=True)
        except ShapeError as err:
            raise ConversionError(f'{where}: {err}') from err
        return [Shape(label, 'mask', np.zeros(2), order, mask=mask)]
    raise ConversionError(
        f'{where}: "segmentation" must be a list of polygons or an RLE '
        f'object, got {type(seg).__name__}')


def _area(shapes: Sequence[Shape]) -> float:
    """Polygon areas by the shoelace formula, masks by their pixel count."""
    total = 0.0
    for s in shapes:
        if s.kind == 'mask':
            total += float(s.mask.sum())
        else:
            x, y = s.points[:, 0], s.points[:, 1]
            total += abs(float(np.dot(x, np.roll(y, -1)) -
                               np.dot(y, np.roll(x, -1)))) / 2
    return total


def read_coco(sources: Sequence[str], images: Sequence[str] | None = None,
              background: bool = True, crowd_as_class: bool = False,
              skip_unknown: bool = False,
              skip_missing: bool = False) -> SourceDataset:
    """Parse COCO files (one per split, or one to split later).

    ``images``: the image folder of each file (default: its folder).
    ``skip_unknown`` drops annotations of unknown category ids,
    ``skip_missing`` images whose file is missing and annotations of image
    ids that are not listed; both are counted in the summary.
    """
    images = list(images or [])
    if images and len(images) not in (1, len(sources)):
        raise ConversionError(
            f'{len(sources)} COCO files but {len(images)} --images folders: '
            'give one folder, or one per file in the same order')
    data = [read_json(p) for p in sources]
    categories: dict[int, str] = {}
    for path, d in zip(sources, data):
        for cat in require(d, 'categories', path, 'the file'):
            cid, name = int(require(cat, 'id', path, 'a category')), \
                str(require(cat, 'name', path, f'category {cat.get("id")}'))
            if categories.setdefault(cid, name) != name:
                raise ConversionError(
                    f'{path}: category id {cid} is {name!r} here but '
                    f'{categories[cid]!r} in an earlier file')
    first = 1 if background else 0
    cat_ids = sorted(categories)
    label_of = {cid: first + i for i, cid in enumerate(cat_ids)}
    names = (['background'] if background else []) + \
        [categories[c] for c in cat_ids]
    dataset = SourceDataset(list(zip(names, class_colours(len(names)))), [],
                            background)
    for index, (path, d) in enumerate(zip(sources, data)):
        folder = images[min(index, len(images) - 1)] if images \
            else osp.dirname(osp.abspath(path))
        split = _split_of(path, len(sources) > 1)
        by_id: dict[int, Sample] = {}
        for img in require(d, 'images', path, 'the file'):
            where = f'image id {img.get("id")}'
            name = str(require(img, 'file_name', path, where))
            sample = Sample(
                osp.splitext(osp.basename(name))[0], osp.join(folder, name),
                int(require(img, 'height', path, where)),
                int(require(img, 'width', path, where)), split,
                source=f'{path} ({where})')
            if not dataset.has_image(
                    sample.image, skip_missing,
                    f'{path}: {where} names {name}, which is not in '
                    f'{folder}; point --images at the image folder, or pass '
                    '--skip-missing to leave it out'):
                continue
            check_declared_size(sample)
            by_id[int(img['id'])] = sample
            dataset.samples.append(sample)
        listed = {int(img['id']) for img in d['images']}
        painted: dict[int, list[tuple[int, int, list[Shape]]]] = {}
        for order, ann in enumerate(require(d, 'annotations', path,
                                            'the file')):
            image_id = int(require(ann, 'image_id', path,
                                   f'annotation id {ann.get("id")}'))
            cid = int(require(ann, 'category_id', path,
                              f'annotation id {ann.get("id")}'))
            if image_id not in listed:
                if skip_missing:
                    dataset.counts['annotations of unlisted images '
                                   '(skipped)'] += 1
                    continue
                raise ConversionError(
                    f'{path}: annotation id {ann.get("id")} is for image id '
                    f'{image_id}, which the file does not list; pass '
                    '--skip-missing to leave such annotations out')
            if image_id not in by_id:
                continue
            if cid not in categories:
                if skip_unknown:
                    dataset.counts['annotations of unknown categories '
                                   '(skipped)'] += 1
                    continue
                raise ConversionError(
                    f'{path}: annotation id {ann.get("id")} has category id '
                    f'{cid}, which "categories" does not list (known: '
                    f'{cat_ids}); fix the export or pass --skip-unknown')
            sample = by_id[image_id]
            crowd = bool(ann.get('iscrowd', 0)) and not crowd_as_class
            shapes = _shapes(ann, IGNORE if crowd else label_of[cid], order,
                             sample.height, sample.width, path)
            if crowd:
                dataset.counts['crowd regions (ignored)'] += 1
            painted.setdefault(image_id, []).append(
                (crowd, _area(shapes), shapes))
        for image_id, entries in painted.items():
            # crowd last, then larger areas below smaller; file order breaks
            # ties (sorted is stable)
            ranked = sorted(entries, key=lambda e: (e[0], -e[1]))
            for rank, (_, _, shapes) in enumerate(ranked):
                for shape in shapes:
                    shape.order = rank
                by_id[image_id].shapes.extend(shapes)
    count_clipped(dataset)
    return dataset
