"""Small synthetic datasets in the real ADE20K and Cityscapes layouts.

Tests and the quickstart need data on disk in the formats the real datasets
use, without downloading anything. Every generator here is deterministic from
its seed (image ``i`` of a split depends only on the seed, the split and
``i``), and writes atomically: the dataset is built in a temporary folder next
to its destination and renamed into place at the end, so a failure never
leaves a half-written dataset behind. A manifest file records the arguments
and the generator version; calling a generator again with the same arguments
reuses the dataset on disk, with different ones it replaces it. A folder at
the destination that has no manifest (for instance a real dataset) is never
touched.

The module is over 400 lines because its three generators (ADE20K,
Cityscapes, scenes) share the staging, manifest and seeding code above them;
splitting them would only move those private helpers between files.
"""
from __future__ import annotations

import colorsys
import contextlib
import json
import multiprocessing
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Iterator, Sequence

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS
from PIL import Image, ImageDraw

from ..errors import ConvsegError

MANIFEST = 'convseg_synthetic.json'
#: Bumped whenever a generator's output changes, so that datasets written by
#: an older version are regenerated instead of reused.
GENERATOR_VERSION = 1

ADE20K_NUM_CLASSES = 150

#: (city, sequence) pairs used for the Cityscapes splits (real city names).
CITYSCAPES_CITIES = {
    'train': ('aachen', 'bochum', 'bremen'),
    'val': ('frankfurt', 'lindau', 'munster'),
}


class SyntheticDatasetError(ConvsegError, RuntimeError):
    """Raised when a synthetic dataset cannot be written at its destination."""


# --------------------------------------------------------------------------
# atomic writing
# --------------------------------------------------------------------------

def _read_manifest(path: str) -> dict | None:
    try:
        with open(osp.join(path, MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _staging(dest: str) -> Iterator[str]:
    """Yield a temporary folder beside ``dest``; on success move it there.

    On any exception the temporary folder is removed and ``dest`` is left as it
    was. An existing ``dest`` (already checked to be ours) is swapped out and
    removed only after the new folder is in place.
    """
    parent = osp.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(dest)}.tmp-', dir=parent)
    try:
        yield tmp
        old = None
        if osp.exists(dest):
            old = tempfile.mkdtemp(prefix=f'.{osp.basename(dest)}.old-',
                                   dir=parent)
            os.rename(dest, osp.join(old, 'data'))
        os.rename(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build(dest: str, kind: str, params: dict,
           write: Callable[[str], None]) -> str:
    """Write a dataset of ``kind`` with ``params`` to ``dest`` via ``write``.

    ``write(tmp_dir)`` fills a fresh folder; the manifest is added last.
    Returns ``dest``.
    """
    dest = osp.abspath(dest)
    manifest = {'kind': kind, 'params': params, 'version': GENERATOR_VERSION}
    if osp.exists(dest):
        existing = _read_manifest(dest)
        if existing == manifest:
            return dest
        if existing is None or existing.get('kind') != kind:
            raise SyntheticDatasetError(
                f'{dest} already exists and is not a synthetic {kind} dataset '
                f'(no {MANIFEST} for it there); it is left untouched. Choose '
                'another root, or remove that folder if it is yours to '
                'remove.')
    with _staging(dest) as tmp:
        write(tmp)
        with open(osp.join(tmp, MANIFEST), 'w') as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
    return dest


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    split_id = {'train': 0, 'val': 1}[split]
    return np.random.default_rng([seed, split_id, index])


def _check_counts(num_train: int, num_val: int, size: Sequence[int]) -> tuple:
    if num_train < 1 or num_val < 1:
        raise ValueError(f'num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}')
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f'size must be (height, width) with both >= 16, '
                         f'got {tuple(size)}')
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------
# drawing helpers
# --------------------------------------------------------------------------

def _random_polygon(rng: np.random.Generator, h: int, w: int,
                    min_frac: float = 0.15,
                    max_frac: float = 0.45) -> list[tuple[int, int]]:
    """A star-shaped polygon with integer vertices inside an (h, w) image."""
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
    n = int(rng.integers(5, 10))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(min_frac, max_frac, n) * min(h, w)
    xs = np.clip(np.round(cx + radii * np.cos(angles)), 0, w - 1)
    ys = np.clip(np.round(cy + radii * np.sin(angles)), 0, h - 1)
    return [(int(x), int(y)) for x, y in zip(xs, ys)]


def _render(label: np.ndarray, colours: np.ndarray,
            rng: np.random.Generator, noise: float = 12.0) -> np.ndarray:
    """RGB uint8 (H, W, 3) image: each label's colour, a gradient and noise."""
    h, w = label.shape
    img = colours[label].astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :, None]
    img += rng.uniform(-15, 15) * ramp
    img += rng.normal(0.0, noise, size=(h, w, 3)).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _class_colours(num: int, seed: int) -> np.ndarray:
    """A fixed (num, 3) palette of distinct-ish colours."""
    return np.random.default_rng(seed).integers(30, 226, size=(num, 3))


# --------------------------------------------------------------------------
# ADE20K
# --------------------------------------------------------------------------

def _ade20k_sample(rng: np.random.Generator, h: int,
                   w: int) -> tuple[np.ndarray, np.ndarray]:
    label_img = Image.new('L', (w, h), 0)
    draw = ImageDraw.Draw(label_img)
    # a "stuff" region over part of the image, then a few objects on top
    split_row = int(rng.integers(h // 4, 3 * h // 4))
    draw.rectangle([0, split_row, w - 1, h - 1],
                   fill=int(rng.integers(1, ADE20K_NUM_CLASSES + 1)))
    for _ in range(int(rng.integers(2, 5))):
        cls = int(rng.integers(1, ADE20K_NUM_CLASSES + 1))
        draw.polygon(_random_polygon(rng, h, w), fill=cls)
    label = np.asarray(label_img, dtype=np.uint8)
    colours = _class_colours(ADE20K_NUM_CLASSES + 1, 150)
    return _render(label, colours, rng), label


def generate_ade20k(root: str, num_train: int = 8, num_val: int = 4,
                    size: Sequence[int] = (64, 64), seed: int = 0) -> str:
    """Write a small ADE20K-format dataset under ``root``.

    Layout: ``root/ADEChallengeData2016/images/{training,validation}/
    ADE_{train,val}_%08d.jpg`` (RGB, ``size`` = (H, W)) and
    ``annotations/{training,validation}/*.png`` (uint8, values 0..150, 0 =
    'other', as in the release). Returns the ``ADEChallengeData2016`` path.
    """
    h, w = _check_counts(num_train, num_val, size)
    params = dict(num_train=num_train, num_val=num_val, size=[h, w],
                  seed=seed)

    def write(tmp: str) -> None:
        for split, folder, tag, count in (
                ('train', 'training', 'train', num_train),
                ('val', 'validation', 'val', num_val)):
            img_dir = osp.join(tmp, 'images', folder)
            ann_dir = osp.join(tmp, 'annotations', folder)
            os.makedirs(img_dir)
            os.makedirs(ann_dir)
            for i in range(count):
                image, label = _ade20k_sample(_rng(seed, split, i), h, w)
                name = f'ADE_{tag}_{i + 1:08d}'
                Image.fromarray(image).save(
                    osp.join(img_dir, name + '.jpg'), quality=95)
                Image.fromarray(label).save(
                    osp.join(ann_dir, name + '.png'))

    return _build(osp.join(root, 'ADEChallengeData2016'), 'ade20k', params,
                  write)


# --------------------------------------------------------------------------
# Cityscapes
# --------------------------------------------------------------------------

def _box(x0: float, y0: float, x1: float, y1: float) -> list[list[int]]:
    x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _cityscapes_objects(rng: np.random.Generator, h: int,
                        w: int) -> list[dict]:
    """Polygons of a street scene, back to front, with official label names.

    Includes the cases the official rasteriser treats specially: a
    ``...group`` label, a label with id -1 (``license plate``, not drawn) and
    void classes (``ego vehicle``, ``out of roi``).
    """
    horizon = rng.uniform(0.35, 0.5) * h
    objects = [
        ('out of roi', _box(0, 0, w - 1, h - 1)),
        ('sky', _box(0, 0, w - 1, horizon)),
        ('building', _box(rng.uniform(0, 0.2) * w, horizon * 0.3,
                          rng.uniform(0.4, 0.7) * w, horizon)),
        ('vegetation', _box(rng.uniform(0.7, 0.8) * w, horizon * 0.5,
                            w - 1, horizon)),
        ('road', [[0, h - 1], [int(w * 0.42), int(horizon)],
                  [int(w * 0.58), int(horizon)], [w - 1, h - 1]]),
        ('sidewalk', [[0, int(horizon)], [int(w * 0.42), int(horizon)],
                      [0, int(h * 0.8)]]),
        ('terrain', [[w - 1, int(horizon)], [int(w * 0.58), int(horizon)],
                     [w - 1, int(h * 0.8)]]),
    ]
    pole_x = rng.uniform(0.62, 0.72) * w
    objects += [
        ('pole', _box(pole_x, horizon * 0.4, pole_x + max(1, w // 64),
                      horizon + h * 0.1)),
        ('traffic sign', _box(pole_x - 2, horizon * 0.4, pole_x + 4,
                              horizon * 0.4 + 4)),
    ]
    for _ in range(int(rng.integers(1, 4))):
        cw, ch = rng.uniform(0.12, 0.22) * w, rng.uniform(0.12, 0.2) * h
        cx = rng.uniform(0.05, 0.95 - cw / w) * w
        cy = rng.uniform(horizon, h * 0.85 - ch)
        label = 'cargroup' if rng.random() < 0.3 else 'car'
        objects.append((label, _box(cx, cy, cx + cw, cy + ch)))
        objects.append(('license plate',
                        _box(cx + cw * 0.4, cy + ch * 0.7, cx + cw * 0.6,
                             cy + ch * 0.85)))
    px = rng.uniform(0.1, 0.3) * w
    objects.append((str(rng.choice(['person', 'rider'])),
                    _box(px, horizon - h * 0.1, px + w * 0.03,
                         horizon + h * 0.15)))
    objects.append(('ego vehicle', [[0, h - 1], [int(w * 0.2), int(h * 0.92)],
                                    [int(w * 0.8), int(h * 0.92)],
                                    [w - 1, h - 1]]))
    return [dict(label=name, polygon=poly) for name, poly in objects]


def generate_cityscapes(root: str, num_train: int = 4, num_val: int = 2,
                        size: Sequence[int] = (64, 128), seed: int = 0,
                        train_ids: bool = True) -> str:
    """Write a small Cityscapes-format dataset under ``root``.

    Layout: ``root/cityscapes/leftImg8bit/{train,val}/<city>/
    <city>_<seq>_<frame>_leftImg8bit.png`` (8-bit RGB, ``size`` = (H, W)) and
    ``gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_polygons.json``
    (official polygon format, official label names) with
    ``..._gtFine_labelIds.png`` rasterised from it by ``cityscapesscripts``,
    and ``..._gtFine_labelTrainIds.png`` too when ``train_ids`` (otherwise
    ``tools/prepare_cityscapes.py`` writes them). Returns the ``cityscapes``
    path.
    """
    from cityscapesscripts.helpers.labels import id2label
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    h, w = _check_counts(num_train, num_val, size)
    params = dict(num_train=num_train, num_val=num_val, size=[h, w],
                  seed=seed, train_ids=train_ids)
    colours = np.zeros((256, 3), dtype=np.int64)
    for label_id, label in id2label.items():
        if label_id >= 0:
            colours[label_id] = label.color

    def write(tmp: str) -> None:
        for split, count in (('train', num_train), ('val', num_val)):
            cities = CITYSCAPES_CITIES[split]
            for i in range(count):
                rng = _rng(seed, split, i)
                city = cities[i % len(cities)]
                stem = f'{city}_{i // len(cities):06d}_000019'
                img_dir = osp.join(tmp, 'leftImg8bit', split, city)
                gt_dir = osp.join(tmp, 'gtFine', split, city)
                os.makedirs(img_dir, exist_ok=True)
                os.makedirs(gt_dir, exist_ok=True)
                gt = osp.join(gt_dir, stem + '_gtFine_')
                with open(gt + 'polygons.json', 'w') as f:
                    json.dump(dict(imgHeight=h, imgWidth=w,
                                   objects=_cityscapes_objects(rng, h, w)),
                              f, indent=4)
                json2labelImg(gt + 'polygons.json', gt + 'labelIds.png',
                              'ids')
                if train_ids:
                    json2labelImg(gt + 'polygons.json',
                                  gt + 'labelTrainIds.png', 'trainIds')
                label = np.asarray(Image.open(gt + 'labelIds.png'))
                Image.fromarray(_render(label, colours, rng)).save(
                    osp.join(img_dir, stem + '_leftImg8bit.png'))

    return _build(osp.join(root, 'cityscapes'), 'cityscapes', params, write)


# --------------------------------------------------------------------------
# scenes (the quickstart dataset)
# --------------------------------------------------------------------------

#: Classes of the scene dataset; label ``i + 1`` in the PNGs is class ``i``
#: and 0 marks small 'other' clutter, ignored as in ADE20K.
SCENE_CLASSES = ('background', 'stripes', 'checks', 'dots', 'ring',
                 'triangle')
SCENE_PALETTE = [[120, 120, 120], [230, 25, 75], [60, 180, 75],
                 [255, 225, 25], [0, 130, 200], [245, 130, 48]]


def _colour_pair(rng: np.random.Generator,
                 hue: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB colours (0..255) far enough apart for a pattern to show.

    Without ``hue`` both are random. With ``hue`` (degrees) both lie within
    45 degrees of it (so neighbouring classes' ranges overlap), one light and
    one dark.
    """
    if hue is None:
        c1 = rng.uniform(20, 235, 3)
        while True:
            c2 = rng.uniform(20, 235, 3)
            if np.abs(c1 - c2).sum() > 150:
                return c1, c2
    light, dark = rng.uniform(0.75, 1.0), rng.uniform(0.2, 0.45)
    if rng.random() < 0.5:
        light, dark = dark, light
    return tuple(
        255 * np.array(colorsys.hsv_to_rgb(
            (hue + rng.uniform(-45, 45)) % 360 / 360, rng.uniform(0.4, 1),
            value)) for value in (light, dark))


def _rotated(rng: np.random.Generator, yy: np.ndarray,
             xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0, np.pi)
    return (xx * np.cos(angle) + yy * np.sin(angle),
            -xx * np.sin(angle) + yy * np.cos(angle))


def _mix(c1: np.ndarray, c2: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = t[..., None].astype(np.float32)
    return (1 - t) * c1 + t * c2


def _texture(kind: str, rng: np.random.Generator, yy: np.ndarray,
             xx: np.ndarray, scale: float,
             hue: float | None = None) -> np.ndarray:
    """A float (H, W, 3) texture of ``kind`` with random colours and pose."""
    c1, c2 = _colour_pair(rng, hue)
    u, v = _rotated(rng, yy, xx)
    if kind == 'stripes':
        period = rng.uniform(5, 7) * scale
        return _mix(c1, c2, (u / period + rng.random()) % 1 < 0.5)
    if kind == 'checks':
        cell = rng.uniform(5, 7) * scale
        return _mix(c1, c2, (np.floor(u / cell) + np.floor(v / cell)) % 2)
    if kind == 'dots':
        step = rng.uniform(8, 10) * scale
        radius = rng.uniform(0.22, 0.32) * step
        du = (u / step + rng.random()) % 1 - 0.5
        dv = (v / step + rng.random()) % 1 - 0.5
        return _mix(c1, c2, np.hypot(du, dv) * step < radius)
    if kind == 'flat':
        return np.broadcast_to(c1, u.shape + (3,)).astype(np.float32)
    if kind == 'waves':
        period = rng.uniform(16, 32) * scale
        return _mix(c1, c2, 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
                    * np.cos(2 * np.pi * v / (2 * period)))
    if kind == 'tiles':
        tile = rng.uniform(12, 20) * scale
        grout = ((u % tile) < scale) | ((v % tile) < scale)
        shade = (np.floor(u / tile) * 7 + np.floor(v / tile) * 3) % 5 / 12
        return _mix(c1, c2, np.where(grout, 1.0, shade))
    if kind == 'clouds':
        coarse = rng.random((5, 5)).astype(np.float32)
        img = Image.fromarray(coarse).resize(yy.shape[::-1],
                                             Image.Resampling.BICUBIC)
        return _mix(c1, c2, np.clip(np.asarray(img), 0, 1))
    raise ValueError(f'unknown texture {kind!r}')


def _shape_mask(kind: str, rng: np.random.Generator, h: int,
                w: int) -> np.ndarray:
    """A boolean (H, W) mask of a random shape of ``kind``."""
    s = min(h, w)
    mask = Image.new('L', (w, h), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
    if kind == 'ring':
        outer = rng.uniform(0.2, 0.3) * s
        inner = outer * rng.uniform(0.35, 0.5)
        draw.ellipse([cx - outer, cy - outer, cx + outer, cy + outer], fill=1)
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif kind == 'triangle':
        radius = rng.uniform(0.24, 0.36) * s
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(
            -0.3, 0.3, 3)
        draw.polygon([(cx + radius * np.cos(a), cy + radius * np.sin(a))
                      for a in angles], fill=1)
    elif kind == 'blob':
        if rng.random() < 0.5:
            rx, ry = rng.uniform(0.18, 0.3, 2) * s
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
        else:
            draw.polygon(_random_polygon(rng, h, w, 0.18, 0.33), fill=1)
    elif kind == 'clutter':
        size = rng.uniform(0.05, 0.1) * s
        draw.rectangle([cx - size, cy - size, cx + size, cy + size], fill=1)
    else:
        raise ValueError(f'unknown shape {kind!r}')
    return np.asarray(mask, dtype=bool)


#: class index -> (shape, texture) of the objects of that class
_SCENE_OBJECTS = {1: ('blob', 'stripes'), 2: ('blob', 'checks'),
                  3: ('blob', 'dots'), 4: ('ring', 'flat'),
                  5: ('triangle', 'flat')}


def scene_sample(rng: np.random.Generator, h: int,
                  w: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: RGB uint8 (H, W, 3) image and uint8 (H, W) label 0..6."""
    scale = min(h, w) / 64
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    background = str(rng.choice(['waves', 'tiles', 'clouds']))
    img = _texture(background, rng, yy, xx, scale)
    img += rng.normal(0, rng.uniform(12, 20), (h, w, 1))  # grain
    label = np.ones((h, w), dtype=np.uint8)
    occupied = np.zeros((h, w), dtype=bool)
    classes = rng.choice(list(_SCENE_OBJECTS), size=int(rng.integers(1, 4)))
    for cls in classes:
        shape, texture = _SCENE_OBJECTS[int(cls)]
        # objects may occlude each other, but mostly not
        for _ in range(5):
            mask = _shape_mask(shape, rng, h, w)
            if (mask & occupied).sum() < 0.3 * mask.sum():
                break
        occupied |= mask
        hue = 360 * (cls - 1) / len(_SCENE_OBJECTS)
        img[mask] = _texture(texture, rng, yy, xx, scale, hue)[mask]
        label[mask] = cls + 1
    for _ in range(int(rng.integers(0, 3))):
        mask = _shape_mask('clutter', rng, h, w)
        img[mask] = rng.uniform(0, 255, (int(mask.sum()), 3))
        label[mask] = 0
    img = img * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25, 3)
    img += rng.normal(0, rng.uniform(2, 6), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), label


def _write_scene_range(img_dir: str, ann_dir: str, split: str, seed: int,
                       h: int, w: int, start: int, stop: int) -> None:
    """Write scenes ``start`` to ``stop - 1`` of ``split`` (one share)."""
    for i in range(start, stop):
        image, label = scene_sample(_rng(seed, split, i), h, w)
        Image.fromarray(image).save(
            osp.join(img_dir, f'scene_{i:06d}.jpg'), quality=95)
        Image.fromarray(label).save(osp.join(ann_dir, f'scene_{i:06d}.png'))


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: scenes per job of :func:`_run_shares`: enough to be worth a process
SCENES_PER_SHARE = 250


def _run_shares(jobs: list[tuple], workers: int) -> None:
    """Run :func:`_write_scene_range` over ``jobs``, in ``workers`` forked
    processes where the platform forks; here for one worker, or when all the
    jobs together are no more than one share."""
    total = sum(job[-1] - job[-2] for job in jobs)
    if workers <= 1 or total <= SCENES_PER_SHARE or \
            'fork' not in multiprocessing.get_all_start_methods():
        for job in jobs:
            _write_scene_range(*job)
        return
    context = multiprocessing.get_context('fork')
    with context.Pool(workers) as pool:
        pool.starmap(_write_scene_range, jobs)


def generate_scenes(root: str, num_train: int = 1000, num_val: int = 100,
                    size: Sequence[int] = (64, 64), seed: int = 0,
                    workers: int | None = None) -> str:
    """Write the synthetic scene dataset in the ADE20K layout under ``root``.

    Each image shows one to three objects over a structured, grainy
    background (waves, tiles or clouds in random colours): stripes, checks
    and dots on random blobs, and flat rings and triangles told apart by
    shape. Object colours come from per-class hue ranges that overlap, so
    colour alone does not separate the classes; objects may occlude each
    other, small 'other' patches of noise are scattered over the scene, and
    every image gets brightness and colour jitter and noise. Layout:
    ``root/synthetic_scenes/
    images/{training,validation}/scene_%06d.jpg`` (RGB, ``size`` = (H, W)) and
    ``annotations/.../scene_%06d.png`` (uint8: 0 = other, i + 1 = class i).
    ``workers`` processes share the writing (default: the CPUs this process
    may use); the files do not depend on it, since each scene depends only
    on the seed, the split and its index. Returns the ``synthetic_scenes``
    path.
    """
    h, w = _check_counts(num_train, num_val, size)
    params = dict(num_train=num_train, num_val=num_val, size=[h, w],
                  seed=seed)
    workers = _default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f'workers must be >= 1, got {workers}')

    def write(tmp: str) -> None:
        jobs = []
        for split, folder, count in (('train', 'training', num_train),
                                     ('val', 'validation', num_val)):
            img_dir = osp.join(tmp, 'images', folder)
            ann_dir = osp.join(tmp, 'annotations', folder)
            os.makedirs(img_dir)
            os.makedirs(ann_dir)
            # shares of at most SCENES_PER_SHARE keep the workers evenly busy
            for start in range(0, count, SCENES_PER_SHARE):
                jobs.append((img_dir, ann_dir, split, seed, h, w, start,
                             min(start + SCENES_PER_SHARE, count)))
        _run_shares(jobs, workers)

    return _build(osp.join(root, 'synthetic_scenes'), 'scenes', params,
                  write)


@DATASETS.register_module()
class SyntheticScenesDataset(BaseSegDataset):
    """The scene dataset of :func:`generate_scenes` (ADE20K conventions).

    ``.jpg`` images, ``.png`` labels where 0 is 'other' and ignored
    (``reduce_zero_label=True``), classes :data:`SCENE_CLASSES`.
    """
    METAINFO = dict(classes=SCENE_CLASSES, palette=SCENE_PALETTE)

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = True, **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
