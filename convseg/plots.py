"""Pictures of a training run: curves from mmengine's scalar logs, and a
summary sheet of predictions beside the ground truth.

mmengine's ``LocalVisBackend`` writes ``WORK_DIR/<timestamp>/vis_data/
scalars.json``, one JSON object per line: training lines carry ``iter``,
the losses and the learning rates (``head_lr`` and ``stage1_lr`` from
convseg's ``LrLoggerHook``), validation lines the metrics (``mIoU``...) at
``step``. :func:`read_scalars` reads every run of a work dir (a resumed run
adds a timestamp folder) in order; the drawing functions use matplotlib
(a dependency of mmseg) without a display.
"""
from __future__ import annotations

import glob
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import ConvsegError
from .fileio import atomic_write

#: panel size of the summary sheet, in pixels (at :data:`DPI`)
PANEL_PIXELS = 224
DPI = 100
LR_KEYS = (('head_lr', 'heads'), ('stage1_lr', 'first backbone stage'))


class NoScalarLogError(ConvsegError, FileNotFoundError):
    """Raised when a work dir holds no mmengine scalar log."""


@dataclass
class ScalarLog:
    """Training and validation scalars of a work dir, by iteration."""

    train: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    val: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def series(self, split: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Iterations and values of one scalar (empty arrays if absent)."""
        points = getattr(self, split).get(key, [])
        return (np.array([p[0] for p in points], dtype=np.int64),
                np.array([p[1] for p in points], dtype=np.float64))


def read_scalars(work_dir: str) -> ScalarLog:
    """Read ``WORK_DIR/*/vis_data/scalars.json`` in run order.

    A later run's value for an iteration replaces an earlier run's (a resumed
    run repeats the iterations after its checkpoint).
    """
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    if not files:
        raise NoScalarLogError(
            f'no scalar log in {work_dir}: expected '
            f'{osp.join(work_dir, "<timestamp>", "vis_data", "scalars.json")}'
            ', which mmengine writes when the config\'s visualizer has a '
            "LocalVisBackend (vis_backends=[dict(type='LocalVisBackend')], "
            'as in configs/_base_/default_runtime.py)')
    merged: dict[str, dict[str, dict[int, float]]] = dict(train={}, val={})
    for path in files:
        with open(path, encoding='utf-8') as handle:
            for line in handle:
                if not line.strip():
                    continue
                row = json.loads(line)
                split = 'train' if 'iter' in row else 'val'
                step = int(row.get('iter', row.get('step', 0)))
                for key, value in row.items():
                    if key not in ('iter', 'step') and isinstance(
                            value, (int, float)):
                        merged[split].setdefault(key, {})[step] = float(value)
    return ScalarLog(
        **{split: {key: sorted(points.items())
                   for key, points in keys.items()}
           for split, keys in merged.items()})


def loss_keys(log: ScalarLog) -> list[str]:
    """The total ``loss`` first, then each head's loss terms."""
    terms = sorted(k for k in log.train if '.loss' in k)
    return (['loss'] if 'loss' in log.train else []) + terms


def draw_curves(axes: Sequence, log: ScalarLog) -> None:
    """Losses, learning rates and validation mIoU on three matplotlib axes."""
    loss_ax, lr_ax, miou_ax = axes
    for key in loss_keys(log):
        loss_ax.plot(*log.series('train', key), label=key,
                     linewidth=1.6 if key == 'loss' else 1.0)
    loss_ax.set_title('training loss')
    lr_keys = [(k, name) for k, name in LR_KEYS if k in log.train] or [
        ('lr', 'lr')]
    for key, name in lr_keys:
        lr_ax.plot(*log.series('train', key), label=name)
    lr_ax.set_title('learning rate')
    steps, miou = log.series('val', 'mIoU')
    miou_ax.plot(steps, miou, marker='o')
    miou_ax.set_title('validation mIoU (%)')
    for ax in axes:
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize='small')


def _save(figure, out: str) -> str:
    with atomic_write(out, keep_suffix=True) as tmp:
        figure.savefig(tmp, dpi=DPI, format='png')
    return out


def plot_curves(work_dir: str, out: str) -> str:
    """Write the curves of ``work_dir``'s scalar log to the PNG ``out``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    log = read_scalars(work_dir)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4), dpi=DPI,
                                layout='constrained')
    draw_curves(axes, log)
    figure.suptitle(osp.abspath(work_dir))
    try:
        return _save(figure, out)
    finally:
        plt.close(figure)


def colour_labels(labels: np.ndarray,
                  palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W, 3) uint8 picture of class ids; other values (ignore) black."""
    colours = np.zeros((256, 3), np.uint8)
    colours[:len(palette)] = np.asarray(palette, np.uint8)
    return colours[np.clip(labels, 0, 255).astype(np.uint8)]


def summary_sheet(scenes: Sequence[tuple[str, np.ndarray, np.ndarray,
                                         np.ndarray]],
                  classes: Sequence[str], palette: Sequence[Sequence[int]],
                  work_dir: str, out: str, title: str = ''
                  ) -> tuple[str, int]:
    """Write a PNG: one row per scene (input | ground truth | prediction),
    the class legend, and the training curves of ``work_dir``. Returns the
    path and the smallest side of a scene panel in the PNG, in pixels.

    A scene is ``(name, RGB image, ground-truth ids, predicted ids)``, the id
    maps (H, W) with 255 (or any non-class value) for ignored pixels, drawn
    black. Each panel is :data:`PANEL_PIXELS` pixels wide, images scaled up
    without smoothing.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    log = read_scalars(work_dir)
    panel = PANEL_PIXELS / DPI
    rows = len(scenes)
    figure = plt.figure(figsize=(3 * panel + 2.4, rows * panel + 3.6),
                        dpi=DPI, layout='constrained')
    grid = figure.add_gridspec(rows + 1, 3,
                               height_ratios=[panel] * rows + [3.0])
    panels = []
    for row, (name, image, truth, prediction) in enumerate(scenes):
        for col, (picture, heading) in enumerate((
                (image, 'input'),
                (colour_labels(truth, palette), 'ground truth'),
                (colour_labels(prediction, palette), 'prediction'))):
            ax = figure.add_subplot(grid[row, col])
            ax.imshow(picture, interpolation='nearest')
            panels.append(ax)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(heading)
            if col == 0:
                ax.set_ylabel(name, fontsize='small')
    curves = grid[rows, :].subgridspec(1, 3)
    draw_curves([figure.add_subplot(curves[0, i]) for i in range(3)], log)
    handles = [Patch(facecolor=np.asarray(c) / 255, edgecolor='black',
                     label=n) for n, c in zip(classes, palette)]
    handles.append(Patch(facecolor='black', label='ignored'))
    figure.legend(handles=handles, loc='outside right upper',
                  title='classes')
    if title:
        figure.suptitle(title)
    try:
        figure.canvas.draw()
        smallest = min(min(ax.get_window_extent().width,
                           ax.get_window_extent().height) for ax in panels)
        return _save(figure, out), int(smallest)
    finally:
        plt.close(figure)
