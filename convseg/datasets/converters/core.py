"""What every format shares: the parsed dataset, splits, and the writing.

A format module parses its export into a :class:`SourceDataset` (class names
and colours, one :class:`Sample` per image with its shapes or colour mask)
and checks everything it can before a file is written. :func:`write_dataset`
then writes mmseg's layout under ``OUT_ROOT`` on all usable cores:

- ``img_dir/{train,val}/NAME<suffix>``: the images, copied (re-encoded as PNG
  only where the export mixes image formats, since mmseg's datasets take one
  suffix);
- ``ann_dir/{train,val}/NAME.png``: palette PNGs of class ids, 255 ignored;
- ``classes.json`` and ``config.py`` (from
  ``configs/upernet_convnext_t_custom.py``; images with a side under 512 get
  a smaller crop, see :func:`crop_settings`).

Every file goes through :func:`convseg.fileio.atomic_write`, so a failure
leaves no half-written file. Each label PNG stores a digest of what it was
drawn from; a rerun skips labels whose digest matches and images whose size
and modification time match, and replaces the others.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import os.path as osp
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from PIL import Image, PngImagePlugin

from ...errors import ConvsegError
from ...fileio import atomic_write, atomic_write_text
from .raster import IGNORE, Shape, outside, paint

SPLITS = ('train', 'val')
#: the PNG text key holding a label file's source digest
DIGEST_KEY = 'convseg-source'
#: the custom config the generated one is made from
TEMPLATE = 'upernet_convnext_t_custom.py'


class ConversionError(ConvsegError, ValueError):
    """Raised for an export that cannot be converted as it is."""


@dataclass
class Sample:
    """One image of the export and what is drawn on it.

    ``shapes`` are painted over the background; ``mask_path`` (colour-mask
    formats) is read and mapped through ``colour_ids`` instead.
    """

    name: str
    image: str
    height: int
    width: int
    split: str | None = None
    shapes: list[Shape] = field(default_factory=list)
    mask_path: str | None = None
    source: str = ''


@dataclass
class SourceDataset:
    """A parsed export: classes (name, RGB) in id order and the samples.

    ``colour_ids`` maps an RGB triple of a colour mask to its label id.
    ``counts`` are the summary's tallies (skipped annotations, clipped
    shapes, ...).
    """

    classes: list[tuple[str, tuple[int, int, int]]]
    samples: list[Sample]
    background: bool = True
    colour_ids: dict[tuple[int, int, int], int] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)

    def has_image(self, image: str, skip_missing: bool, message: str) -> bool:
        """True if ``image`` exists; else count it as skipped with
        ``skip_missing``, or raise :class:`ConversionError` with ``message``
        (which names the file and the remedy)."""
        if osp.isfile(image):
            return True
        if skip_missing:
            self.counts['images missing (skipped)'] += 1
            return False
        raise ConversionError(message)


def class_colours(num: int) -> list[tuple[int, int, int]]:
    """Distinct colours for classes without their own (VOC's bit pattern)."""
    colours = []
    for i in range(num):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from an image file's header."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, SyntaxError) as err:
        raise ConversionError(f'{path}: not a readable image ({err})') \
            from err


def check_declared_size(sample: Sample) -> None:
    """Raise if the image file's size differs from the declared one."""
    height, width = image_size(sample.image)
    if (height, width) != (sample.height, sample.width):
        raise ConversionError(
            f'{sample.image}: the image is {width} x {height} (W x H) but '
            f'{sample.source or "the annotation"} declares {sample.width} x '
            f'{sample.height}; export the annotations again for this image '
            'or replace the image with the one that was labelled')


def count_clipped(dataset: SourceDataset) -> None:
    """Count the shapes that reach outside their image (they are clipped)."""
    dataset.counts['shapes clipped to the image'] += sum(
        outside(shape, s.height, s.width)
        for s in dataset.samples for shape in s.shapes)


def check_unique_names(samples: Sequence[Sample]) -> None:
    """Refuse two images that would be written under one name."""
    seen: dict[str, str] = {}
    for sample in samples:
        if sample.name in seen:
            raise ConversionError(
                f'two images would both be written as {sample.name!r}: '
                f'{seen[sample.name]} and {sample.image}; rename one of them '
                '(output names are the image file names without folder and '
                'suffix)')
        seen[sample.name] = sample.image


def assign_splits(samples: Sequence[Sample], val_fraction: float,
                  seed: int) -> None:
    """Give samples without a split one: ``val_fraction`` of them (at least
    one where there are two or more) go to val, chosen by ``seed``."""
    if not 0 <= val_fraction < 1:
        raise ConversionError(
            f'--val-fraction must be in [0, 1), got {val_fraction}')
    free = sorted((s for s in samples if s.split is None),
                  key=lambda s: s.name)
    if not free:
        return
    num_val = int(round(len(free) * val_fraction))
    if val_fraction > 0 and len(free) > 1:
        num_val = min(max(num_val, 1), len(free) - 1)
    order = np.random.default_rng(seed).permutation(len(free))
    chosen = set(order[:num_val].tolist())
    for i, sample in enumerate(free):
        sample.split = 'val' if i in chosen else 'train'


def _digest(sample: Sample, fill: int) -> str:
    """What a label file is drawn from, as a short hash."""
    h = hashlib.sha1()
    h.update(f'{sample.height} {sample.width} {fill}'.encode())
    for shape in sample.shapes:
        h.update(f'{shape.label} {shape.kind} {shape.order} {shape.radius}'
                 .encode())
        h.update(np.ascontiguousarray(shape.points, np.float64).tobytes())
        if shape.mask is not None:
            h.update(np.packbits(shape.mask).tobytes())
    if sample.mask_path is not None:
        stat = os.stat(sample.mask_path)
        h.update(f'{sample.mask_path} {stat.st_size} {stat.st_mtime_ns}'
                 .encode())
    return h.hexdigest()[:20]


def _stored_digest(path: str) -> str | None:
    try:
        with Image.open(path) as image:
            return image.info.get(DIGEST_KEY)
    except (OSError, SyntaxError):
        return None


def _colour_label(sample: Sample,
                  colour_ids: dict[tuple[int, int, int], int]) -> np.ndarray:
    with Image.open(sample.mask_path) as image:
        rgb = np.asarray(image.convert('RGB'))
    if rgb.shape[:2] != (sample.height, sample.width):
        raise ConversionError(
            f'{sample.mask_path}: the mask is {rgb.shape[1]} x '
            f'{rgb.shape[0]} but its image {sample.image} is '
            f'{sample.width} x {sample.height}; masks and images must match')
    code = (rgb[..., 0].astype(np.int64) << 16) | \
        (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in colour_ids],
                    dtype=np.int64)
    ids = np.array(list(colour_ids.values()), dtype=np.uint8)
    order = np.argsort(keys)
    keys, ids = keys[order], ids[order]
    pos = np.clip(np.searchsorted(keys, code), 0, len(keys) - 1)
    unknown = keys[pos] != code
    if unknown.any():
        values, counts = np.unique(code[unknown], return_counts=True)
        listed = ', '.join(
            f'({v >> 16}, {(v >> 8) & 255}, {v & 255}): {n} px'
            for v, n in list(zip(values.tolist(), counts.tolist()))[:5])
        raise ConversionError(
            f'{sample.mask_path}: colours not in the palette: {listed}; add '
            'them to the labelmap / palette JSON (name "ignore" for pixels '
            'to ignore)')
    return ids[pos]


@dataclass
class _Job:
    sample: Sample
    out_root: str
    suffix: str
    fill: int
    palette: bytes
    colour_ids: dict


def _write_sample(job: _Job) -> tuple[int, int]:
    """Write one image and its label; (images written, labels written)."""
    sample = job.sample
    img_dest = osp.join(job.out_root, 'img_dir', sample.split,
                        sample.name + job.suffix)
    ann_dest = osp.join(job.out_root, 'ann_dir', sample.split,
                        sample.name + '.png')
    wrote_image = wrote_label = 0
    src = os.stat(sample.image)
    if not (osp.isfile(img_dest) and
            os.stat(img_dest).st_mtime_ns == src.st_mtime_ns and
            (job.suffix != osp.splitext(sample.image)[1].lower() or
             os.stat(img_dest).st_size == src.st_size)):
        with atomic_write(img_dest, keep_suffix=True) as tmp:
            if osp.splitext(sample.image)[1].lower() == job.suffix:
                shutil.copyfile(sample.image, tmp)
            else:
                with Image.open(sample.image) as image:
                    image.save(tmp, format='PNG')
            os.utime(tmp, ns=(src.st_atime_ns, src.st_mtime_ns))
        wrote_image = 1
    digest = _digest(sample, job.fill)
    if _stored_digest(ann_dest) != digest:
        if sample.mask_path is not None:
            label = _colour_label(sample, job.colour_ids)
        else:
            label = paint(sample.shapes, sample.height, sample.width,
                          job.fill)
        png = Image.fromarray(label, mode='P')
        png.putpalette(job.palette)
        info = PngImagePlugin.PngInfo()
        info.add_text(DIGEST_KEY, digest)
        with atomic_write(ann_dest) as tmp:
            png.save(tmp, format='PNG', pnginfo=info)
        wrote_label = 1
    return wrote_image, wrote_label


def usable_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _palette_bytes(classes: Sequence[tuple[str, tuple]]) -> bytes:
    table = np.zeros((256, 3), np.uint8)
    for i, (_, colour) in enumerate(classes):
        table[i] = colour
    table[IGNORE] = (255, 255, 255)
    return table.tobytes()


def _image_suffix(samples: Sequence[Sample]) -> str:
    suffixes = {osp.splitext(s.image)[1].lower() for s in samples}
    if len(suffixes) == 1:
        suffix = suffixes.pop()
        return '.jpg' if suffix == '.jpeg' else suffix
    print_log(f'the images have several formats ({sorted(suffixes)}): '
              'they are written as PNG', logger='current')
    return '.png'


def crop_settings(samples: Sequence[Sample]) -> dict:
    """The template's 512 crop, or for images with a side under 512 the
    largest multiple of 32 that fits the smallest side (image scale 4:1)."""
    side = min(min(s.height, s.width) for s in samples)
    if side >= 512:
        return {}
    crop = max(32, side // 32 * 32)
    return dict(crop_size=(crop, crop), image_scale=(4 * crop, crop))


def config_text(out_root: str, classes: Sequence[tuple[str, tuple]],
                img_suffix: str, repo_configs: str,
                crop: dict | None = None) -> str:
    """The custom config with this dataset's first block filled in."""
    template = osp.join(repo_configs, TEMPLATE)
    if not osp.isfile(template):
        raise ConversionError(
            f'{template} is missing: the config is made from it; run from a '
            'convseg checkout (pip install -e .)')
    with open(template, encoding='utf-8') as f:
        text = f.read()
    text = text.replace("'./_base_/",
                        repr(osp.join(repo_configs, '_base_'))[:-1] + '/')
    settings = dict(
        data_root=osp.abspath(out_root),
        classes=tuple(name for name, _ in classes),
        palette=[list(colour) for _, colour in classes],
        img_suffix=img_suffix, seg_map_suffix='.png',
        reduce_zero_label=False, **(crop or {}))
    for key, value in settings.items():
        text, count = re.subn(rf'^{key} = .*$', f'{key} = {value!r}', text,
                              flags=re.M)
        if count != 1:
            raise ConversionError(
                f'{template} has {count} lines "{key} = ..."; the generated '
                'config needs exactly one')
    header = ('# Written by tools/convert_dataset.py for the dataset in this '
              'folder.\n')
    return header + text


def repo_configs() -> str:
    """The ``configs`` folder of the convseg checkout."""
    return osp.join(osp.dirname(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__))))), 'configs')


def write_dataset(dataset: SourceDataset, out_root: str,
                  workers: int | None = None) -> dict:
    """Write ``dataset`` in mmseg's layout under ``out_root``; the summary.

    ``workers`` processes (default: every usable core) write the files, with
    a progress bar. Returns counts (images, labels written and skipped per
    split, and the export's tallies) and writes nothing outside ``out_root``.
    """
    if not dataset.samples:
        raise ConversionError('the export has no image to convert')
    check_unique_names(dataset.samples)
    suffix = _image_suffix(dataset.samples)
    fill = 0 if dataset.background else IGNORE
    palette = _palette_bytes(dataset.classes)
    jobs = [_Job(s, out_root, suffix, fill, palette, dataset.colour_ids)
            for s in dataset.samples]
    workers = usable_cores() if workers is None else max(int(workers), 1)
    bar = ProgressBar(len(jobs))
    written = np.zeros(2, np.int64)
    if workers > 1 and len(jobs) > 1 and \
            'fork' in multiprocessing.get_all_start_methods():
        with multiprocessing.get_context('fork').Pool(workers) as pool:
            for result in pool.imap_unordered(_write_sample, jobs,
                                              chunksize=8):
                written += result
                bar.update()
    else:
        for job in jobs:
            written += _write_sample(job)
            bar.update()
    bar.file.write('\n')
    classes_json = json.dumps(
        {'classes': [name for name, _ in dataset.classes],
         'palette': [list(c) for _, c in dataset.classes],
         'ignore_index': IGNORE}, indent=2) + '\n'
    atomic_write_text(classes_json, osp.join(out_root, 'classes.json'))
    atomic_write_text(config_text(out_root, dataset.classes, suffix,
                                  repo_configs(),
                                  crop_settings(dataset.samples)),
                      osp.join(out_root, 'config.py'))
    per_split = Counter(s.split for s in dataset.samples)
    summary = {f'{split} images': per_split.get(split, 0)
               for split in SPLITS}
    summary['images copied'] = int(written[0])
    summary['labels written'] = int(written[1])
    summary['labels up to date (skipped)'] = len(jobs) - int(written[1])
    summary.update(dataset.counts)
    return summary
