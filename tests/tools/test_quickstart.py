"""tools/quickstart.py end to end on a tiny setting (the full run is
`make quickstart`)."""
import json
import os

import numpy as np
from PIL import Image


def test_quickstart_tiny(tmp_path, run_script):
    data_root, work_dir = tmp_path / 'data', tmp_path / 'work'
    result = run_script(
        'tools/quickstart.py', '--num-train', '16', '--num-val', '4',
        '--iters', '4', '--num-overlays', '2', '--data-root', data_root,
        '--work-dir', work_dir, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr

    dataset = data_root / 'synthetic_scenes'
    for split, count in (('training', 16), ('validation', 4)):
        assert len(os.listdir(dataset / 'images' / split)) == count
        assert len(os.listdir(dataset / 'annotations' / split)) == count

    checkpoint = work_dir / 'iter_4.pth'
    metrics_file = work_dir / 'test' / 'iter_4_metrics.json'
    assert checkpoint.is_file()
    metrics = json.loads(metrics_file.read_text())
    assert [row['class'] for row in metrics['per_class']] == [
        'background', 'stripes', 'checks', 'dots', 'ring', 'triangle']
    assert 0 <= metrics['mIoU'] <= 100

    # the summary: mIoU and classes as tools/test.py wrote them, and where
    # things are
    tail = result.stdout[result.stdout.index('==> 5. done'):].splitlines()
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

    # overlays drawn by demo/image_demo.py on the first validation images
    for name in ('scene_000000', 'scene_000001'):
        overlay = Image.open(work_dir / 'overlays' / f'{name}_overlay.png')
        assert overlay.mode == 'RGB' and min(overlay.size) >= 64
        mask = np.asarray(
            Image.open(work_dir / 'overlays' / f'{name}_mask.png'))
        assert mask.shape == (64, 64) and mask.max() < 6
    assert not (work_dir / 'overlays' / 'scene_000002_overlay.png').exists()
