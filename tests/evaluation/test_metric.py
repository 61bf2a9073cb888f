"""PerClassIoUMetric against an independent numpy confusion matrix, and the
files it writes (results, prediction PNGs in official ids)."""
import csv
import json
import math
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

import convseg  # noqa: F401
from convseg.evaluation import PerClassIoUMetric, write_results

CLASSES = ('sky', 'road', 'car', 'tree')


def samples(seed=0, count=3, shape=(6, 9), reduce_zero_label=False):
    """Data samples as mmengine's evaluator hands them to metrics."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        pred = rng.integers(0, len(CLASSES), shape)
        gt = rng.integers(0, len(CLASSES), shape)
        gt[rng.random(shape) < 0.2] = 255
        gt[gt == 3] = 2  # class 3 never in the ground truth
        out.append(dict(
            pred_sem_seg=dict(data=torch.from_numpy(pred)[None]),
            gt_sem_seg=dict(data=torch.from_numpy(gt)[None]),
            img_path=f'/data/images/frame_{i}.jpg',
            reduce_zero_label=reduce_zero_label))
    return out


def numpy_metrics(batch):
    """aAcc, per-class IoU and Acc (percent) from a confusion matrix."""
    n = len(CLASSES)
    cm = np.zeros((n, n), np.int64)
    for s in batch:
        gt = s['gt_sem_seg']['data'].numpy().ravel()
        pred = s['pred_sem_seg']['data'].numpy().ravel()
        keep = gt != 255
        cm += np.bincount(gt[keep] * n + pred[keep],
                          minlength=n * n).reshape(n, n)
    inter = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        iou, acc = inter / union * 100, inter / cm.sum(1) * 100
    return inter.sum() / cm.sum() * 100, iou, acc


def evaluate(metric, batch):
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, batch)
    return metric.evaluate(len(batch))


def test_summary_and_files_equal_a_numpy_confusion_matrix(tmp_path):
    batch = samples()
    prefix = str(tmp_path / 'results' / 'iter_8')
    summary = evaluate(PerClassIoUMetric(result_prefix=prefix), batch)
    a_acc, iou, acc = numpy_metrics(batch)
    assert math.isnan(iou[3]) is False and iou[3] == 0.0  # predicted only
    assert math.isnan(acc[3])
    assert summary['aAcc'] == pytest.approx(round(a_acc, 2), abs=1e-4)
    assert summary['mIoU'] == pytest.approx(round(np.nanmean(iou), 2),
                                            abs=1e-4)
    assert summary['mAcc'] == pytest.approx(round(np.nanmean(acc), 2),
                                            abs=1e-4)

    written = json.loads((tmp_path / 'results' /
                          'iter_8_metrics.json').read_text())
    assert written['mIoU'] == round(np.nanmean(iou), 2)
    assert [row['class'] for row in written['per_class']] == list(CLASSES)
    np.testing.assert_allclose(
        [row['IoU'] for row in written['per_class']], iou, rtol=1e-6)
    assert [row['Acc'] for row in written['per_class']][3] is None
    np.testing.assert_allclose(
        [row['Acc'] for row in written['per_class']][:3], acc[:3],
        rtol=1e-6)

    with open(tmp_path / 'results' / 'iter_8_per_class.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['class'] for r in rows] == list(CLASSES)
    np.testing.assert_allclose([float(r['IoU']) for r in rows], iou,
                               rtol=1e-6)
    assert rows[3]['Acc'] == ''


def test_pngs_hold_class_plus_one_with_reduce_zero_label(tmp_path):
    batch = samples(seed=1, reduce_zero_label=True)
    evaluate(PerClassIoUMetric(out_dir=str(tmp_path / 'png')), batch)
    assert sorted(p.name for p in (tmp_path / 'png').iterdir()) == [
        'frame_0.png', 'frame_1.png', 'frame_2.png']
    for i, s in enumerate(batch):
        written = np.array(Image.open(tmp_path / 'png' / f'frame_{i}.png'))
        assert written.dtype == np.uint8
        np.testing.assert_array_equal(
            written, s['pred_sem_seg']['data'][0].numpy() + 1)


def test_pngs_hold_the_given_label_ids(tmp_path, umask_022):
    batch = samples(seed=2)
    label_ids = [23, 7, 26, 21]
    evaluate(PerClassIoUMetric(out_dir=str(tmp_path), label_ids=label_ids),
             batch)
    for i, s in enumerate(batch):
        written = np.array(Image.open(tmp_path / f'frame_{i}.png'))
        np.testing.assert_array_equal(
            written, np.take(label_ids, s['pred_sem_seg']['data'][0]))
    assert sorted(os.listdir(tmp_path)) == [f'frame_{i}.png' for i in
                                            range(len(batch))]
    assert {stat.S_IMODE(os.stat(tmp_path / name).st_mode)
            for name in os.listdir(tmp_path)} == {0o644}


def test_label_ids_must_cover_every_class(tmp_path):
    metric = PerClassIoUMetric(out_dir=str(tmp_path), label_ids=[7, 8])
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(ValueError) as err:
        metric.process({}, samples())
    assert str(err.value) == (
        'PerClassIoUMetric has 2 label_ids but the dataset has 4 classes; '
        'give one official id per class.')


def test_label_ids_must_fit_a_png():
    with pytest.raises(ValueError) as err:
        PerClassIoUMetric(label_ids=[7, 300])
    assert str(err.value) == ('label_ids must be in 0..255 to fit an 8-bit '
                              'PNG, got [7, 300].')


def test_write_results_replaces_files_and_leaves_no_temporaries(tmp_path,
                                                               umask_022):
    prefix = str(tmp_path / 'r')
    (tmp_path / 'r_metrics.json').write_text('old')
    paths = write_results(prefix, {'aAcc': 90.0, 'mIoU': 50.5},
                          ['a', 'b'], [50.5, float('nan')], [75.0, 25.0])
    assert paths == (prefix + '_metrics.json', prefix + '_per_class.csv')
    assert json.loads((tmp_path / 'r_metrics.json').read_text()) == {
        'aAcc': 90.0, 'mIoU': 50.5, 'per_class': [
            {'class': 'a', 'IoU': 50.5, 'Acc': 75.0},
            {'class': 'b', 'IoU': None, 'Acc': 25.0}]}
    assert (tmp_path / 'r_per_class.csv').read_text().splitlines() == [
        'class,IoU,Acc', 'a,50.5,75.0', 'b,,25.0']
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'r_metrics.json', 'r_per_class.csv']
    # readable by the group and others under umask 022, like a plain open
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in paths} == {0o644}


def test_write_results_needs_one_value_per_class(tmp_path):
    with pytest.raises(ValueError) as err:
        write_results(str(tmp_path / 'r'), {}, ['a', 'b'], [1.0], [1.0, 2.0])
    assert str(err.value) == (
        'write_results needs one IoU and one Acc per class; got 2 classes, '
        '1 IoU and 2 Acc values.')
    assert list(tmp_path.iterdir()) == []
