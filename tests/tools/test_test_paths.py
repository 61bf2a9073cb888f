"""tools/test.py evaluates the model as configured unless --fast is given.

The reference is computed here: the plain model, built from the config and
the checkpoint's weights, run through mmseg's test_step on each validation
image. The default run's prediction PNGs must equal it bit for bit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from mmengine.runner import save_checkpoint
from PIL import Image

import convseg  # noqa: F401

from ..helpers import randomize_bn_stats

CONFIG = """
_base_ = [{tiny!r}, {ade!r}, {runtime!r}, {schedule!r}, {optimizer!r}]
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(decode_head=dict(channels=64, norm_cfg=norm_cfg),
             auxiliary_head=dict(norm_cfg=norm_cfg),
             test_cfg=dict(mode='slide', crop_size=(32, 32), stride=(24, 24)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')]
test_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root={root!r}, pipeline=test_pipeline))
"""


def test_default_run_is_the_plain_model_and_fast_is_logged(
        tmp_path, tiny_config, ade20k_root, repo_root, run_script):
    base = repo_root / 'configs' / '_base_'
    config = tmp_path / 'tiny_ade.py'
    config.write_text(CONFIG.format(
        tiny=str(tiny_config), ade=str(base / 'datasets' / 'ade20k.py'),
        runtime=str(base / 'default_runtime.py'),
        schedule=str(base / 'schedules' / 'schedule_160k.py'),
        optimizer=str(base / 'optimizers' / 'adamw_layer_decay.py'),
        root=ade20k_root))
    cfg = Config.fromfile(str(config))
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    randomize_bn_stats(model)
    save_checkpoint(dict(state_dict=model.state_dict(), meta={}),
                    str(tmp_path / 'tiny.pth'))

    model.eval()
    pipeline = Compose([s for s in cfg.test_pipeline
                        if s['type'] != 'LoadAnnotations'])
    images = sorted(Path(ade20k_root, 'images', 'validation').iterdir())
    expected = {}
    for path in images:
        packed = pipeline(dict(img_path=str(path)))
        with torch.no_grad():
            sample = model.test_step(dict(
                inputs=[packed['inputs']],
                data_samples=[packed['data_samples']]))[0]
        expected[path.stem + '.png'] = sample.pred_sem_seg.data[0].numpy() + 1

    logs = {}
    for flags in ([], ['--fast']):
        out = tmp_path / ('fast' if flags else 'plain')
        run = run_script('tools/test.py', config, tmp_path / 'tiny.pth',
                         '--work-dir', out, '--out', out / 'png', *flags)
        assert run.returncode == 0, run.stderr[-3000:]
        logs[bool(flags)] = run.stdout
        if not flags:
            written = {p.name: np.asarray(Image.open(p))
                       for p in sorted((out / 'png').iterdir())}
            assert sorted(written) == sorted(expected)
            for name, labels in written.items():
                np.testing.assert_array_equal(labels, expected[name])
    assert 'inference path: the model as configured' in logs[False]
    assert 'fast inference: UPerHead' not in logs[False]
    assert ('inference path: fast (--fast: '
            'convseg.fast.prepare_for_inference)') in logs[True]
    assert 'fast inference: UPerHead' in logs[True]
