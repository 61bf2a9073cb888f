"""The confusion matrix of PerClassIoUMetric against numpy's bincount, and
the picture for 150 classes."""
import csv

import numpy as np
import torch
from PIL import Image

import convseg  # noqa: F401
from convseg.evaluation import PerClassIoUMetric
from convseg.evaluation.confusion import write_confusion


def _batch(n_classes, seed=0, count=4, shape=(7, 11)):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        gt = rng.integers(0, n_classes, shape)
        pred = np.where(rng.random(shape) < 0.6, gt,
                        rng.integers(0, n_classes, shape))
        gt[rng.random(shape) < 0.15] = 255
        out.append(dict(pred_sem_seg=dict(data=torch.from_numpy(pred)[None]),
                        gt_sem_seg=dict(data=torch.from_numpy(gt)[None]),
                        img_path=f'/x/{i}.jpg'))
    return out


def test_confusion_matrix_equals_numpy_and_metrics_unchanged(tmp_path):
    classes = ('a', 'b', 'c', 'd', 'e')
    batch = _batch(len(classes))
    plain = PerClassIoUMetric()
    plain.dataset_meta = dict(classes=classes)
    plain.process({}, batch)
    expected_metrics = plain.evaluate(len(batch))
    metric = PerClassIoUMetric(confusion_prefix=str(tmp_path / 'run'))
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, batch[:2])
    metric.process({}, batch[2:])
    assert metric.evaluate(len(batch)) == expected_metrics
    n = len(classes)
    gt = np.concatenate([s['gt_sem_seg']['data'].numpy().ravel()
                         for s in batch])
    pred = np.concatenate([s['pred_sem_seg']['data'].numpy().ravel()
                           for s in batch])
    keep = gt != 255
    expected = np.bincount(gt[keep] * n + pred[keep],
                           minlength=n * n).reshape(n, n)
    with open(tmp_path / 'run_confusion.csv', newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['true \\ predicted', *classes]
    assert [r[0] for r in rows[1:]] == list(classes)
    got = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == keep.sum() == 273
    assert (tmp_path / 'run_confusion.png').stat().st_size > 5000


def test_picture_of_150_classes_has_room_for_each_label(tmp_path):
    n = 150
    matrix = np.diag(np.arange(1, n + 1)) + 1
    write_confusion(str(tmp_path / 'ade'), [f'class_{i}' for i in range(n)],
                    matrix)
    with Image.open(tmp_path / 'ade_confusion.png') as image:
        width, height = image.size
    # 24 x 22 inches at 100 dpi: at least 12 pixels per row of labels
    assert width == 2400 and height == 2208
    assert height / n >= 12
