"""Colour masks (Pascal VOC, CVAT "Segmentation mask 1.1") to label images.

Each colour of a mask is a class of the palette, given as a ``labelmap.txt``
(CVAT's and VOC's ``name:R,G,B:parts:actions`` lines) or a JSON object of
name -> [R, G, B]. A class named ``background`` becomes id 0 (or ignored with
``background=False``); ``ignore`` and ``void`` mark ignored pixels (VOC's
cream border). A colour outside the palette stops the conversion, naming
the file and the colour.
"""
from __future__ import annotations

import os
import os.path as osp

from .core import ConversionError, Sample, SourceDataset, image_size
from .jsonio import read_json
from .raster import IGNORE

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')
IGNORE_NAMES = ('ignore', 'void')


def read_palette(path: str) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, RGB) pairs of a labelmap.txt or a palette JSON, in file order."""
    if path.endswith('.json'):
        data = read_json(path)
        if not isinstance(data, dict):
            raise ConversionError(
                f'{path}: a palette JSON is an object of name -> [R, G, B]')
        items = list(data.items())
    else:
        items = []
        with open(path, encoding='utf-8') as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith('#'):
                    continue
                parts = line.split(':')
                try:
                    items.append((parts[0], [int(v) for v in
                                             parts[1].split(',')]))
                except (IndexError, ValueError) as err:
                    raise ConversionError(
                        f'{path}: line {number} is {line!r}; labelmap lines '
                        'are name:R,G,B:parts:actions') from err
    palette = []
    for name, rgb in items:
        if len(rgb) != 3 or not all(isinstance(v, int) and 0 <= v <= 255
                                    for v in rgb):
            raise ConversionError(
                f'{path}: the colour of {name!r} is {rgb}; give [R, G, B] '
                'in 0..255')
        palette.append((str(name), tuple(rgb)))
    return palette


def _split_lists(folder: str | None) -> dict[str, str]:
    """name -> split from ImageSets/Segmentation/{train,val}.txt."""
    splits: dict[str, str] = {}
    if folder is None:
        return splits
    for split, files in (('train', ('train.txt', )),
                         ('val', ('val.txt', 'validation.txt'))):
        for file in files:
            listing = osp.join(folder, file)
            if osp.isfile(listing):
                with open(listing, encoding='utf-8') as f:
                    splits.update({line.strip(): split for line in f
                                   if line.strip()})
    return splits


def read_masks(folder: str, palette: str, images: str,
               background: bool = True, skip_missing: bool = False,
               split_lists: str | None = None) -> SourceDataset:
    """Colour masks ``folder/NAME.png`` with images ``images/NAME.*``."""
    entries = read_palette(palette)
    named = [(n, c) for n, c in entries if n.lower() not in IGNORE_NAMES]
    backgrounds = [e for e in named if e[0].lower() in ('background',
                                                        '_background_')]
    others = [e for e in named if e not in backgrounds]
    classes = (backgrounds[:1] or [('background', (0, 0, 0))]) \
        if background else []
    classes = classes + others
    colour_ids = {c: i for i, (_, c) in enumerate(classes)}
    for name, colour in entries:
        if name.lower() in IGNORE_NAMES or (
                not background and (name, colour) in backgrounds):
            colour_ids[colour] = IGNORE
    if not osp.isdir(images):
        raise ConversionError(
            f'the image folder {images} does not exist; pass --images DIR')
    by_stem = {}
    for name in sorted(os.listdir(images)):
        stem, suffix = osp.splitext(name)
        if suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(stem, osp.join(images, name))
    splits = _split_lists(split_lists)
    dataset = SourceDataset(classes, [], background, colour_ids)
    for name in sorted(os.listdir(folder)):
        stem, suffix = osp.splitext(name)
        if suffix.lower() != '.png':
            continue
        if stem not in by_stem:
            if skip_missing:
                dataset.counts['masks without an image (skipped)'] += 1
                continue
            raise ConversionError(
                f'{osp.join(folder, name)} has no image {stem}.* in '
                f'{images}; pass --skip-missing to leave it out')
        height, width = image_size(by_stem[stem])
        dataset.samples.append(Sample(
            stem, by_stem[stem], height, width, splits.get(stem),
            mask_path=osp.join(folder, name), source=osp.join(folder, name)))
    return dataset


def read_cvat_masks(folder: str, background: bool = True,
                    skip_missing: bool = False) -> SourceDataset:
    """CVAT's "Segmentation mask 1.1" export folder: ``labelmap.txt``,
    ``SegmentationClass/*.png``, ``JPEGImages/`` and, when present,
    ``ImageSets/Segmentation/{train,val}.txt`` for the splits."""
    for part in ('labelmap.txt', 'SegmentationClass', 'JPEGImages'):
        if not osp.exists(osp.join(folder, part)):
            raise ConversionError(
                f'{folder} has no {part}: a CVAT "Segmentation mask 1.1" '
                'export holds labelmap.txt, SegmentationClass/ and '
                'JPEGImages/')
    return read_masks(osp.join(folder, 'SegmentationClass'),
                      osp.join(folder, 'labelmap.txt'),
                      osp.join(folder, 'JPEGImages'), background,
                      skip_missing,
                      osp.join(folder, 'ImageSets', 'Segmentation'))
