"""Your own data through configs/upernet_convnext_t_custom.py, as the README
says: copy the config, set its first block, check the data, train, test and
run the demo.

The dataset is generated here, in mmseg's img_dir/ann_dir layout with its own
class names and file suffixes, labels as single-channel PNGs where 0 means
"ignore" and 255 is ignored too.
"""
from __future__ import annotations

import json
import re

import numpy as np
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import convseg  # noqa: F401

CLASSES = ('water', 'sand', 'rock')
COLOURS = np.array([[30, 60, 200], [220, 200, 120], [110, 100, 90]])
PALETTE = [[0, 0, 255], [255, 255, 0], [128, 128, 128]]
# the test's own last lines: the tests' tiny ConvNeXt and slim heads instead
# of ConvNeXt-T, which is 60M parameters of start-up and compute per tool run
# and nothing the data settings touch
SMALL_MODEL = """
model['backbone'] = dict(arch=None, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64),
                         drop_path_rate=0.0, init_cfg=None)
model['decode_head'].update(in_channels=[8, 16, 32, 64], channels=16)
model['auxiliary_head'].update(in_channels=32, channels=8)
"""


def make_dataset(root, counts={'train': 6, 'val': 2}, size=64):
    """Label ids 1..3 for the classes, 0 (ignored) and a 255 border."""
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        (root / 'img_dir' / split).mkdir(parents=True)
        (root / 'ann_dir' / split).mkdir(parents=True)
        for i in range(count):
            label = np.full((size, size), 1, np.uint8)
            y, x = rng.integers(8, size // 2, 2)
            label[y:y + size // 3, :] = 2
            label[:, x:x + size // 4] = 3
            label[:4, :4] = 0
            label[-1, :] = 255
            image = COLOURS[np.clip(label, 1, 3) - 1] + rng.integers(
                -20, 20, (size, size, 3))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                root / 'img_dir' / split / f'tile{i}_rgb.png')
            Image.fromarray(label).save(
                root / 'ann_dir' / split / f'tile{i}_label.png')


def user_config(repo_root, data_root, path):
    """The custom config copied and its first block set, as a user does."""
    text = (repo_root / 'configs' / 'upernet_convnext_t_custom.py').read_text()
    text = text.replace("'./_base_/", repr(str(repo_root / 'configs')
                                           )[:-1] + "/_base_/")
    settings = dict(data_root=str(data_root), classes=CLASSES,
                    palette=PALETTE, img_suffix='_rgb.png',
                    seg_map_suffix='_label.png', reduce_zero_label=True,
                    crop_size=(64, 64), image_scale=(64, 64))
    for key, value in settings.items():
        text, count = re.subn(rf'^{key} = .*$', f'{key} = {value!r}', text,
                              flags=re.M)
        assert count == 1, key
    path.write_text(text + SMALL_MODEL)
    return path


def test_own_data_config_end_to_end(tmp_path, repo_root, run_script):
    data_root = tmp_path / 'my_tiles'
    make_dataset(data_root)
    config = user_config(repo_root, data_root, tmp_path / 'my_tiles.py')

    # everything follows from the first block
    cfg = Config.fromfile(str(config))
    assert cfg.model.decode_head.num_classes == 3
    assert cfg.model.auxiliary_head.num_classes == 3
    assert cfg.model.backbone.dims == (8, 16, 32, 64)
    init_default_scope('mmseg')
    from mmseg.registry import DATASETS
    val = DATASETS.build(cfg.val_dataloader.dataset)
    assert val.metainfo['classes'] == CLASSES
    assert len(val) == 2
    sample = val[0]['data_samples']
    stored = np.asarray(Image.open(data_root / 'ann_dir' / 'val' /
                                   'tile0_label.png')).astype(np.int64)
    expected = np.where((stored == 0) | (stored == 255), 255, stored - 1)
    np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(), expected)

    loaders = ['train_dataloader', 'val_dataloader', 'test_dataloader']
    options = ['--cfg-options', 'model.backbone.init_cfg=None'] + [
        f'{loader}.{key}' for loader in loaders
        for key in ('num_workers=0', 'persistent_workers=False')]

    check = run_script('tools/check_dataset.py', config)
    assert check.returncode == 0, check.stdout + check.stderr
    lines = check.stdout.splitlines()
    assert 'train: OK' in lines and 'val: OK' in lines

    work_dir = tmp_path / 'work'
    train = run_script(
        'tools/train.py', config, '--work-dir', work_dir, *options,
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2', 'param_scheduler.0.end=1',
        'param_scheduler.1.end=2')
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = work_dir / 'iter_2.pth'
    assert checkpoint.is_file()

    test = run_script('tools/test.py', config, checkpoint, '--work-dir',
                      work_dir / 'test', *options)
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads((work_dir / 'test' / 'iter_2_metrics.json'
                          ).read_text())
    assert [row['class'] for row in metrics['per_class']] == list(CLASSES)

    demo = run_script('demo/image_demo.py',
                      data_root / 'img_dir' / 'val' / 'tile1_rgb.png',
                      config, checkpoint, '--device', 'cpu', '--out-dir',
                      work_dir / 'demo')
    assert demo.returncode == 0, demo.stderr[-3000:]
    mask = Image.open(work_dir / 'demo' / 'tile1_rgb_mask.png')
    assert mask.size == (64, 64) and np.asarray(mask).max() < 3
    assert mask.getpalette()[:9] == [c for rgb in PALETTE for c in rgb]
