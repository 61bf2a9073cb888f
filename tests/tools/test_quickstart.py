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

from ..helpers import confusion_miou, load_tool, plain_model_tta

ITERS = 100
QUICKSTART = 'configs/quickstart_convnext_atto_scenes.py'
CLASSES = ['background', 'stripes', 'checks', 'dots', 'ring', 'triangle']


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


def test_quickstart_trains_a_model_better_than_a_constant(quickstart_run):
    result, dataset, work_dir = (quickstart_run[k]
                                 for k in ('result', 'data', 'work'))
    assert quickstart_run['iters'] == ITERS
    for split, count in (('training', 32), ('validation', 8)):
        assert len(os.listdir(dataset / 'images' / split)) == count
        assert len(os.listdir(dataset / 'annotations' / split)) == count

    checkpoint = work_dir / f'iter_{ITERS}.pth'
    metrics_file = work_dir / 'test' / f'iter_{ITERS}_tta_metrics.json'
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
    assert re.fullmatch(
        rf'validation mIoU {metrics["mIoU"]:.2f}% with flips, '
        rf'\d+\.\d\d% in one pass \({re.escape(str(metrics_file))}\)',
        tail[1]), tail[1]
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


@pytest.fixture(scope='module')
def recomputed(quickstart_run) -> dict:
    """The quickstart checkpoint's validation labels and mIoU, computed here
    (tests.helpers.plain_model_tta: the plain model, flips done with torch;
    counted with numpy): ``with_flips`` (as is, mirrored, upside down),
    ``one_pass``, and ``changed``, the share of pixels the flips change."""
    dataset, work_dir = quickstart_run['data'], quickstart_run['work']
    folder = dataset / 'annotations' / 'validation'
    names = sorted(os.listdir(folder))
    images = [dataset / 'images' / 'validation' / n.replace('.png', '.jpg')
              for n in names]
    truths = []
    for name in names:
        label = np.asarray(Image.open(folder / name)).astype(np.int64)
        truths.append(np.where(label == 0, 255, label - 1))
    checkpoint = work_dir / f'iter_{ITERS}.pth'
    flipped = plain_model_tta(QUICKSTART, checkpoint, images, [(64, 64)],
                              flips=(None, 'horizontal', 'vertical'))
    single = plain_model_tta(QUICKSTART, checkpoint, images, [(64, 64)],
                             flips=(None, ))
    return dict(
        with_flips=confusion_miou(zip(flipped, truths), len(CLASSES))[0],
        one_pass=confusion_miou(zip(single, truths), len(CLASSES))[0],
        changed=np.mean([np.mean(a != b) for a, b in zip(flipped, single)]))


def test_reported_miou_with_flips_and_in_one_pass(quickstart_run,
                                                  recomputed):
    assert recomputed['changed'] > 0.005  # the flips are averaged in
    tail = quickstart_run['result'].stdout.split('==> 6. done\n')[1]
    shown = re.match(r'validation mIoU (\d+\.\d\d)% with flips, '
                     r'(\d+\.\d\d)% in one pass ', tail)
    # a pixel or two may round to the other class in another process:
    # 0.05 points is about ten of the 8 x 64 x 64 pixels
    assert float(shown[1]) == pytest.approx(recomputed['with_flips'],
                                            abs=0.05)
    assert float(shown[2]) == pytest.approx(recomputed['one_pass'],
                                            abs=0.05)


def test_one_pass_miou_is_this_runs_after_a_longer_run(tmp_path):
    tool = load_tool('quickstart')
    # mmengine's scalar logs of two runs in one work dir, in run order: an
    # earlier one of 300 iterations, then this one of 200
    for stamp, points in (('20261201_000000', {150: 70.0, 300: 80.0}),
                          ('20261202_000000', {100: 60.0, 200: 75.5})):
        folder = tmp_path / stamp / 'vis_data'
        folder.mkdir(parents=True)
        (folder / 'scalars.json').write_text(''.join(
            json.dumps(dict(mIoU=v, step=k)) + '\n'
            for k, v in points.items()))
    assert tool.last_validation_miou(str(tmp_path), 200) == 75.5
    with pytest.raises(SystemExit) as stop:
        tool.last_validation_miou(str(tmp_path), 250)
    assert str(stop.value) == (f'quickstart: the scalar log in {tmp_path} '
                               'has no validation mIoU at iteration 250')


def test_summary_sheet_panels(quickstart_run):
    from convseg.plots import summary_sheet
    sheet = Image.open(quickstart_run['work'] / 'summary.png')
    assert sheet.mode in ('RGB', 'RGBA')
    # 2 rows of 3 panels of PANEL_PIXELS, the curves below, the legend right
    assert sheet.size[0] >= 3 * PANEL_PIXELS
    assert sheet.size[1] >= 2 * PANEL_PIXELS + 250
    image = np.zeros((64, 64, 3), np.uint8)
    labels = np.zeros((64, 64), np.int64)
    path, smallest = summary_sheet(
        [('a', image, labels, labels)] * 2, CLASSES,
        [(i * 40, 0, 0) for i in range(6)], str(quickstart_run['work']),
        str(quickstart_run['work'] / 'again.png'))
    assert smallest >= 192
    assert Image.open(path).size == sheet.size


def text_log_losses(work_dir) -> dict[int, float]:
    """``loss`` per iteration from mmengine's text log (4 decimals)."""
    (log, ) = work_dir.glob('*/*.log')
    found = re.findall(r'Iter\(train\) \[\s*(\d+)/\d+\].*? loss: ([\d.]+)',
                       log.read_text())
    return {int(i): float(v) for i, v in found}


def test_plot_curves_on_the_quickstart_logs(quickstart_run, recomputed,
                                            run_script, tmp_path):
    work_dir = quickstart_run['work']
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
    miou_steps, miou = axes[2].lines[0].get_data()
    assert list(miou_steps) == [ITERS // 5 * i for i in range(1, 6)]
    # the last validation is the checkpoint's, in one pass
    assert miou[-1] == pytest.approx(recomputed['one_pass'], abs=0.05)
    plt.close(figure)
    missing = run_script('tools/plot_curves.py', tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith(f'error: no scalar log in {tmp_path}')


def test_plot_curves_draws_the_layer_decayed_lr(scenes_root, run_script,
                                                tmp_path):
    """A short quickstart run with layer decay 0.9: the first backbone
    stage's curve is the heads' times 0.9 ** 4 (stage-wise, num_layers 4:
    stage 1 has layer id 1)."""
    iters, work_dir = 6, tmp_path / 'decay'
    result = run_script(
        'tools/train.py', QUICKSTART, '--work-dir', work_dir, '--cfg-options',
        *(f'{loader}.dataset.data_root={scenes_root}'
          for loader in ('train_dataloader', 'val_dataloader',
                         'test_dataloader')),
        'train_dataloader.batch_size=2',
        'optim_wrapper.paramwise_cfg.decay_rate=0.9',
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        'default_hooks.logger.interval=1',
        f'default_hooks.checkpoint.interval={iters}',
        f'param_scheduler.1.end={iters}')
    assert result.returncode == 0, result.stderr[-3000:]

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 3)
    draw_curves(axes, read_scalars(str(work_dir)))
    lines = {line.get_label(): line for ax in axes for line in ax.lines}
    head_steps, head_lr = lines['heads'].get_data()
    stage1_steps, stage1_lr = lines['first backbone stage'].get_data()
    plt.close(figure)
    assert list(head_steps) == list(stage1_steps) == list(range(1, iters + 1))
    # the warm-up moves the lr at every step: each point is its own step's
    assert len(set(head_lr)) == iters
    # the schedule ends at 0 on the last step; the ones before carry the ratio
    assert min(head_lr[:-1]) > 0
    np.testing.assert_allclose(stage1_lr, np.asarray(head_lr) * 0.9**4,
                               rtol=1e-6, atol=0)
