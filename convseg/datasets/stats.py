"""Statistics of a config's dataset split, and loss class weights from them.

:func:`dataset_stats` reads every image and label of a split as the config
resolves it (suffixes, ``reduce_zero_label`` and ``label_map`` applied, as
training sees the labels): per class the pixel share and the number of images
it appears in; per channel (RGB) the image mean and std; image sizes; the
share of ignored pixels. :func:`class_weights` turns the pixel counts into a
``class_weight`` list for ``CrossEntropyLoss``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mmengine.logging import print_log
from PIL import Image

from ..errors import ConvsegError
from ..fileio import atomic_write, atomic_write_text
from .checks import resolve_split

WEIGHTINGS = ('inverse', 'inverse-sqrt', 'median-frequency')


class DatasetStatsError(ConvsegError, ValueError):
    """Raised when a split has nothing to count or a weighting is unknown."""


def _training_labels(raw: np.ndarray, reduce_zero_label: bool,
                     label_map: Mapping | None, ignore: int) -> np.ndarray:
    """Labels as mmseg's LoadAnnotations hands them to the model."""
    label = raw.astype(np.int64)
    if label_map:
        mapped = label.copy()
        for old, new in label_map.items():
            mapped[label == old] = new
        label = mapped
    if reduce_zero_label:
        label = np.where(label == 0, ignore, label - 1)
        label[label == ignore - 1] = ignore
    return label


def dataset_stats(cfg: Any, split: str = 'train',
                  ignore_index: int = 255) -> dict:
    """The statistics of ``split`` (see the module docstring) as a dict."""
    infos = resolve_split(cfg, split)
    if not infos:
        raise DatasetStatsError(
            f'the config has no {split} dataloader with a dataset')
    classes = list(infos[0].classes)
    n = len(classes)
    pixels = np.zeros(n, np.int64)
    images_with = np.zeros(n, np.int64)
    # pixels of the images a class appears in (median-frequency weights)
    pixels_where = np.zeros(n, np.int64)
    ignored = total = 0
    channel_sum = np.zeros(3)
    channel_sq = np.zeros(3)
    sizes = []
    for info in infos:
        for item in info.dataset.load_data_list():
            with Image.open(item['img_path']) as image:
                rgb = np.asarray(image.convert('RGB'), dtype=np.float64)
            sizes.append(rgb.shape[:2])
            flat = rgb.reshape(-1, 3)
            channel_sum += flat.sum(0)
            channel_sq += (flat * flat).sum(0)
            with Image.open(item['seg_map_path']) as seg:
                label = _training_labels(np.asarray(seg),
                                         info.reduce_zero_label,
                                         info.label_map, ignore_index)
            valid = (label != ignore_index) & (label < n) & (label >= 0)
            counts = np.bincount(label[valid], minlength=n)[:n]
            pixels += counts
            images_with += counts > 0
            pixels_where += (counts > 0) * label.size
            ignored += int((~valid).sum())
            total += label.size
    if not sizes:
        raise DatasetStatsError(f'the {split} split has no image')
    count = sum(h * w for h, w in sizes)
    mean = channel_sum / count
    std = np.sqrt(np.maximum(channel_sq / count - mean * mean, 0))
    heights = np.array([s[0] for s in sizes])
    widths = np.array([s[1] for s in sizes])
    labelled = max(int(pixels.sum()), 1)
    preprocessor = cfg.get('model', {}).get('data_preprocessor', {}) or {}
    return {
        'split': split,
        'images': len(sizes),
        'classes': [
            {'class': name, 'pixels': int(p),
             'pixel_share': float(p) / labelled, 'images': int(i),
             'pixels_of_images_with_class': int(w)}
            for name, p, i, w in zip(classes, pixels, images_with,
                                     pixels_where)],
        'ignored_share': ignored / max(total, 1),
        'mean_rgb': mean.round(3).tolist(),
        'std_rgb': std.round(3).tolist(),
        'config_mean': list(preprocessor.get('mean') or []),
        'config_std': list(preprocessor.get('std') or []),
        'height': {'min': int(heights.min()),
                   'median': float(np.median(heights)),
                   'max': int(heights.max())},
        'width': {'min': int(widths.min()),
                  'median': float(np.median(widths)),
                  'max': int(widths.max())},
    }


def class_weights(stats: Mapping, weighting: str) -> list[float]:
    """A ``class_weight`` per class from :func:`dataset_stats`' counts.

    ``inverse``: 1 / share; ``inverse-sqrt``: 1 / sqrt(share); both scaled
    to a mean of 1 over the classes present. ``median-frequency`` (Eigen &
    Fergus): ``median(freq) / freq`` with ``freq`` = a class's pixels over
    the pixels of the images it appears in. Classes absent from the split
    get 0 (a warning names them).
    """
    if weighting not in WEIGHTINGS:
        raise DatasetStatsError(
            f'unknown class weighting {weighting!r}; use one of '
            f'{", ".join(WEIGHTINGS)}')
    rows = stats['classes']
    pixels = np.array([r['pixels'] for r in rows], dtype=np.float64)
    present = pixels > 0
    if not present.any():
        raise DatasetStatsError('no labelled pixel in the split')
    absent = [r['class'] for r, p in zip(rows, present) if not p]
    if absent:
        print_log(f'classes without pixels in the split get weight 0: '
                  f'{absent}', logger='current', level=30)
    weights = np.zeros(len(rows))
    if weighting == 'median-frequency':
        where = np.array([r['pixels_of_images_with_class'] for r in rows],
                         dtype=np.float64)
        freq = pixels[present] / where[present]
        weights[present] = np.median(freq) / freq
    else:
        share = pixels[present] / pixels.sum()
        raw = 1 / share if weighting == 'inverse' else 1 / np.sqrt(share)
        weights[present] = raw / raw.mean()
    return [round(float(w), 4) for w in weights]


def weighted_config_text(config_path: str, cfg: Any,
                         weights: Sequence[float]) -> str:
    """A config inheriting ``config_path`` whose heads' losses use
    ``weights``."""
    import os.path as osp
    lines = [f'# {osp.basename(config_path)} with class weights from '
             'tools/dataset_stats.py',
             f'_base_ = [{osp.abspath(config_path)!r}]',
             f'class_weight = {list(weights)!r}', 'model = dict(']
    for head in ('decode_head', 'auxiliary_head'):
        head_cfg = cfg.model.get(head)
        if not head_cfg or 'loss_decode' not in head_cfg:
            continue
        loss = head_cfg['loss_decode']
        if isinstance(loss, (list, tuple)):
            losses = [dict(item, class_weight=list(weights)) for item in loss]
            lines.append(f'    {head}=dict(loss_decode={losses!r}),')
        else:
            lines.append(f'    {head}=dict(loss_decode=dict('
                         'class_weight=class_weight)),')
    lines.append(')')
    return '\n'.join(lines) + '\n'


def write_stats(stats: Mapping, json_path: str, png_path: str) -> None:
    """The statistics as JSON and one chart (class shares, images each)."""
    atomic_write_text(json.dumps(stats, indent=2) + '\n', json_path)
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.figure import Figure

    rows = stats['classes']
    n = len(rows)
    figure = Figure(figsize=(max(6.0, 0.16 * n + 2), 6), dpi=100,
                    layout='constrained')
    top, bottom = figure.subplots(2, 1, sharex=True)
    names = [r['class'] for r in rows]
    top.bar(range(n), [100 * r['pixel_share'] for r in rows])
    top.set_yscale('log')
    top.set_ylabel('pixel share (%)')
    top.set_title(f"{stats['split']}: {stats['images']} images, "
                  f"{100 * stats['ignored_share']:.1f}% of pixels ignored")
    bottom.bar(range(n), [r['images'] for r in rows], color='tab:orange')
    bottom.set_ylabel('images with the class')
    bottom.set_xticks(range(n), names, rotation=90,
                      fontsize=float(np.clip(300 / max(n, 1), 5.5, 10)))
    with atomic_write(png_path, keep_suffix=True) as tmp:
        figure.savefig(tmp, format='png')
