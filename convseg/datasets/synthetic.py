"""Small synthetic datasets in the real ADE20K and Cityscapes layouts.

Tests and the quickstart need data on disk in the formats the real datasets
use, without downloading anything. Every generator here is deterministic from
its seed (image ``i`` of a split depends only on the seed, the split and
``i``), and writes atomically: the dataset is built in a temporary folder next
to its destination and renamed into place at the end, so a failure never
leaves a half-written dataset behind. A manifest file records the arguments;
calling a generator again with the same arguments reuses the dataset on disk,
with different ones it replaces it. A folder at the destination that has no
manifest (for instance a real dataset) is never touched.
"""
from __future__ import annotations

import contextlib
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

MANIFEST = 'convseg_synthetic.json'

ADE20K_NUM_CLASSES = 150

#: (city, sequence) pairs used for the Cityscapes splits (real city names).
CITYSCAPES_CITIES = {
    'train': ('aachen', 'bochum', 'bremen'),
    'val': ('frankfurt', 'lindau', 'munster'),
}


class SyntheticDatasetError(RuntimeError):
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
    """Yield a temporary folder beside ``dest``; on success move it to ``dest``.

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
    manifest = {'kind': kind, 'params': params}
    if osp.exists(dest):
        existing = _read_manifest(dest)
        if existing == manifest:
            return dest
        if existing is None or existing.get('kind') != kind:
            raise SyntheticDatasetError(
                f'{dest} already exists and is not a synthetic {kind} dataset '
                f'(no {MANIFEST} for it there); it is left untouched. Choose '
                'another root, or remove that folder if it is yours to remove.')
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
                    _box(px, horizon - h * 0.1, px + w * 0.03, horizon + h * 0.15)))
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
