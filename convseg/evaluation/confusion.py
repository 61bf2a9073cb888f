"""Confusion matrix of a test run: counts per (true class, predicted class).

:class:`~convseg.evaluation.PerClassIoUMetric` gathers it in the same pass as
the mIoU (``confusion_prefix``); this module counts one image and writes the
files: ``{prefix}_confusion.csv`` (pixel counts, rows = ground truth,
columns = prediction, headed by class names) and ``{prefix}_confusion.png``
(each row divided by its total, so a row reads as "where this class's
pixels went"). The picture grows with the number of classes and its labels
shrink, so 150 class names stay readable.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np
import torch

from ..fileio import atomic_write, atomic_write_text


def confusion_counts(pred: torch.Tensor, label: torch.Tensor,
                     num_classes: int,
                     ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero cells of one image's confusion matrix: (flat index, count).

    Pixels labelled ``ignore_index`` are left out. The sparse form keeps a
    test set's per-image entries small however many classes there are.
    """
    keep = label != ignore_index
    cells = label[keep].long() * num_classes + pred[keep].long()
    counts = torch.bincount(cells, minlength=num_classes * num_classes)
    index = torch.nonzero(counts).squeeze(1)
    return index.cpu().numpy(), counts[index].cpu().numpy()


def dense_confusion(entries: Sequence[tuple[np.ndarray, np.ndarray]],
                    num_classes: int) -> np.ndarray:
    """Sum sparse per-image entries into a num_classes^2 matrix."""
    flat = np.zeros(num_classes * num_classes, np.int64)
    for index, counts in entries:
        np.add.at(flat, index, counts)
    return flat.reshape(num_classes, num_classes)


def write_confusion(prefix: str, classes: Sequence[str],
                    matrix: np.ndarray) -> tuple[str, str]:
    """Write the CSV of counts and the row-normalised PNG; their paths."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['true \\ predicted', *classes])
    for name, row in zip(classes, matrix):
        writer.writerow([name, *(int(v) for v in row)])
    csv_path = f'{prefix}_confusion.csv'
    atomic_write_text(buf.getvalue(), csv_path)
    png_path = f'{prefix}_confusion.png'
    _draw(png_path, classes, matrix)
    return csv_path, png_path


def _draw(path: str, classes: Sequence[str], matrix: np.ndarray) -> None:
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.figure import Figure

    n = len(classes)
    totals = matrix.sum(1, keepdims=True)
    with np.errstate(invalid='ignore', divide='ignore'):
        share = np.where(totals > 0, matrix / np.maximum(totals, 1), np.nan)
    # about 0.14 inch per class from 20 classes on: 150 classes make a
    # 24-inch picture with 6-point labels
    side = max(6.0, 0.14 * n + 3.0)
    font = float(np.clip(300 / max(n, 1), 5.5, 10))
    figure = Figure(figsize=(side, side * 0.92), dpi=100,
                    layout='constrained')
    axes = figure.subplots()
    image = axes.imshow(share, vmin=0, vmax=1, cmap='Blues')
    axes.set_xticks(range(n), classes, rotation=90, fontsize=font)
    axes.set_yticks(range(n), classes, fontsize=font)
    axes.set_xlabel('predicted')
    axes.set_ylabel('ground truth')
    axes.set_title('confusion matrix (rows sum to 1)')
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if not np.isnan(share[i, j]) and share[i, j] >= 0.005:
                    axes.text(j, i, f'{share[i, j]:.2f}', ha='center',
                              va='center', fontsize=font - 1,
                              color='white' if share[i, j] > 0.5 else
                              'black')
    figure.colorbar(image, ax=axes, shrink=0.6)
    with atomic_write(path, keep_suffix=True) as tmp:
        figure.savefig(tmp, format='png')
