"""tools/quickstart.py end to end on a small setting (the full run is
`make quickstart`), and tools/plot_curves.py on that run's logs."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from convseg.plots import PANEL_PIXELS, draw_curves, read_scalars

ITERS = 160
CLASSES = ['background', 'stripes', 'checks', 'dots', 'ring', 'triangle']


@pytest.fixture(scope='module')
def quickstart(tmp_path_factory, run_script):
    root = tmp_path_factory.mktemp('quickstart')
    data_root, work_dir = root / 'data', root / 'work'
    result = run_script(
        'tools/quickstart.py', '--num-train', 32, '--num-val', 8, '--iters',
        ITERS, '--num-overlays', 2, '--data-root', data_root, '--work-dir',
        work_dir, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return dict(result=result, data=data_root / 'synthetic_scenes',
                work=work_dir)


def majority_class_miou(dataset) -> float:
    """mIoU of predicting the most common class everywhere, by mmseg's rule
    (classes absent from the labels and the predictions are left out)."""
    folder = dataset / 'annotations' / 'validation'
    labels = np.concatenate([np.asarray(Image.open(folder / n)).ravel()
                             for n in sorted(os.listdir(folder))])
    ids = labels[labels > 0].astype(np.int64) - 1
    counts = np.bincount(ids, minlength=len(CLASSES))
    present = np.count_nonzero(counts)
    return 100 * counts.max() / counts.sum() / present


def test_quickstart_trains_a_model_better_than_a_constant(quickstart):
    result, dataset, work_dir = (quickstart[k] for k in ('result', 'data',
                                                          'work'))
    for split, count in (('training', 32), ('validation', 8)):
        assert len(os.listdir(dataset / 'images' / split)) == count
        assert len(os.listdir(dataset / 'annotations' / split)) == count

    checkpoint = work_dir / f'iter_{ITERS}.pth'
    metrics_file = work_dir / 'test' / f'iter_{ITERS}_metrics.json'
    assert checkpoint.is_file()
    metrics = json.loads(metrics_file.read_text())
    assert [row['class'] for row in metrics['per_class']] == CLASSES
    # a pipeline that does not learn (labels misread, lr 0, predictions
    # mixed up) stays at or below a constant prediction
    baseline = majority_class_miou(dataset)
    assert metrics['mIoU'] > baseline + 12, (metrics['mIoU'], baseline)

    # the summary: mIoU and classes as tools/test.py wrote them, and where
    # things are
    tail = result.stdout[result.stdout.index('==> 6. done'):].splitlines()
    assert tail[1] == (f'validation mIoU: {metrics["mIoU"]:.2f}% '
                       f'({metrics_file})')
    rows = [line.split() for line in tail[3:9]]
    assert [r[0] for r in rows] == [c['class'] for c in metrics['per_class']]
    for row, expected in zip(rows, metrics['per_class']):
        for shown, value in zip(row[1:], (expected['IoU'], expected['Acc'])):
            assert shown == ('n/a' if value is None else f'{value:.2f}')
    assert f'dataset:     {dataset}' in tail
    assert f'checkpoint:  {checkpoint}' in tail
    assert f'overlays:    {work_dir / "overlays"}' in tail
    assert f'summary:     {work_dir / "summary.png"}' in tail

    # overlays drawn by demo/image_demo.py on the first validation images
    for name in ('scene_000000', 'scene_000001'):
        overlay = Image.open(work_dir / 'overlays' / f'{name}_overlay.png')
        assert overlay.mode == 'RGB' and min(overlay.size) >= 64
        mask = np.asarray(
            Image.open(work_dir / 'overlays' / f'{name}_mask.png'))
        assert mask.shape == (64, 64) and mask.max() < 6
    assert not (work_dir / 'overlays' / 'scene_000002_overlay.png').exists()


def test_summary_sheet_panels(quickstart):
    from convseg.plots import summary_sheet
    sheet = Image.open(quickstart['work'] / 'summary.png')
    assert sheet.mode in ('RGB', 'RGBA')
    # 2 rows of 3 panels of PANEL_PIXELS, the curves below, the legend right
    assert sheet.size[0] >= 3 * PANEL_PIXELS
    assert sheet.size[1] >= 2 * PANEL_PIXELS + 250
    image = np.zeros((64, 64, 3), np.uint8)
    labels = np.zeros((64, 64), np.int64)
    path, smallest = summary_sheet(
        [('a', image, labels, labels)] * 2, CLASSES,
        [(i * 40, 0, 0) for i in range(6)], str(quickstart['work']),
        str(quickstart['work'] / 'again.png'))
    assert smallest >= 192
    assert Image.open(path).size == sheet.size


def text_log_losses(work_dir) -> dict[int, float]:
    """``loss`` per iteration from mmengine's text log (4 decimals)."""
    (log, ) = work_dir.glob('*/*.log')
    found = re.findall(r'Iter\(train\) \[\s*(\d+)/\d+\].*? loss: ([\d.]+)',
                       log.read_text())
    return {int(i): float(v) for i, v in found}


def test_plot_curves_on_the_quickstart_logs(quickstart, run_script,
                                            tmp_path, repo_root):
    work_dir = quickstart['work']
    out = tmp_path / 'curves.png'
    run = run_script('tools/plot_curves.py', work_dir, '--out', out)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f'wrote {out}'
    assert Image.open(out).size == (1500, 400)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 3)
    draw_curves(axes, read_scalars(str(work_dir)))
    lines = {line.get_label(): line for ax in axes for line in ax.lines}
    assert sorted(lines) == ['_child0', 'aux.loss_ce', 'decode.loss_ce',
                             'first backbone stage', 'heads', 'loss']
    expected = text_log_losses(work_dir)
    interval = ITERS // 25
    assert set(range(interval, ITERS + 1, interval)) <= set(expected)
    steps, values = lines['loss'].get_data()
    assert list(steps) == sorted(expected)
    np.testing.assert_allclose(values, [expected[s] for s in steps],
                               atol=5e-5)
    _, head_lr = lines['heads'].get_data()
    _, stage1_lr = lines['first backbone stage'].get_data()
    # stage-wise decay: stage 1 has layer id 1 of num_layers=4, so its lr is
    # the head's times decay_rate ** 4 (the quickstart trains from scratch
    # with decay_rate 1.0: the same lr)
    from mmengine.config import Config
    paramwise = Config.fromfile(str(
        repo_root / 'configs' / 'quickstart_convnext_atto_scenes.py')
    ).optim_wrapper.paramwise_cfg
    assert (paramwise.decay_type, paramwise.num_layers) == ('stage_wise', 4)
    np.testing.assert_allclose(
        stage1_lr, head_lr * paramwise.decay_rate**4, rtol=1e-6)
    miou_steps, miou = axes[2].lines[0].get_data()
    assert list(miou_steps) == [ITERS // 5 * i for i in range(1, 6)]
    metrics = json.loads((work_dir / 'test' / f'iter_{ITERS}_metrics.json'
                          ).read_text())
    assert miou[-1] == pytest.approx(metrics['mIoU'], abs=0.01)
    plt.close(figure)
    missing = run_script('tools/plot_curves.py', tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith(f'error: no scalar log in {tmp_path}')
