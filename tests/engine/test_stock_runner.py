"""Every switch a convseg config sets works under plain mmengine:
``Runner.from_cfg(cfg).train()``, with no convseg tool in between (as
mmseg's tools/train.py runs it). The tiny config inherits the project's
base configs (custom_imports, default_runtime's hooks, the warm-up + poly
schedule)."""
from __future__ import annotations

import os
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner

from convseg.datasets import generate_ade20k
from convseg.engine import CPUAutocastOptimWrapper
from convseg.hardware import cpu_has_native_bf16

LOADERS = [dict(type='LoadImageFromFile'),
           dict(type='LoadAnnotations', reduce_zero_label=True)]
AFTER_LOADING = [dict(type='RandomCrop', crop_size=(32, 32)),
                 dict(type='PackSegInputs')]


class DtypeProbe(Hook):
    """Records the output dtypes of two convs in the first training
    iteration."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self.handles: list = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if batch_idx == 0:
            model = runner.model
            for conv in (model.backbone.downsample_layers[0][0],
                         model.decode_head.conv_seg):
                self.handles.append(conv.register_forward_hook(
                    lambda module, args, out: self.dtypes.add(out.dtype)))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def train(tmp_path, tiny_train_config, data_root, **overrides):
    """``Runner.from_cfg(cfg).train()`` on the tiny config; the runner, the
    probe's dtypes and the warnings raised."""
    config = tiny_train_config(tmp_path / 'tiny.py', data_root,
                               train_cfg=dict(max_iters=2),
                               default_hooks=dict(checkpoint=dict(
                                   interval=2)),
                               work_dir=str(tmp_path / 'work'), **overrides)
    cfg = Config.fromfile(str(config))
    # its own MessageHub (mmengine names it after the config and the second)
    cfg.experiment_name = f'tiny_{tmp_path.parent.name}_{tmp_path.name}'
    runner = Runner.from_cfg(cfg)
    probe = DtypeProbe()
    runner.register_hook(probe)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        runner.train()
    return runner, probe.dtypes, [str(w.message) for w in caught]


def test_train_speed_switches_take_effect(tmp_path, tiny_train_config,
                                         ade20k_root):
    plain, plain_dtypes, _ = train(tmp_path / 'plain', tiny_train_config,
                                   ade20k_root)
    assert type(plain.optim_wrapper) is OptimWrapper
    assert plain_dtypes == {torch.float32}
    assert not any(g['fused'] for g in
                   plain.optim_wrapper.optimizer.param_groups)
    weight = plain.model.backbone.downsample_layers[0][0].weight
    assert not weight.is_contiguous(memory_format=torch.channels_last)

    runner, dtypes, caught = train(
        tmp_path / 'fast', tiny_train_config, ade20k_root,
        train_speed=dict(fused_adamw=True, bf16=True, channels_last=True,
                         compile_backbone='eager'))
    wrapper = runner.optim_wrapper
    assert all(g['fused'] for g in wrapper.optimizer.param_groups)
    weight = runner.model.backbone.downsample_layers[0][0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert runner.model.backbone._compiled_call_impl is not None
    if cpu_has_native_bf16():
        assert type(wrapper) is CPUAutocastOptimWrapper
        assert dtypes == {torch.bfloat16}
    else:
        assert type(wrapper) is OptimWrapper
        assert dtypes == {torch.float32}
    # the schedulers built before the switches still see every step
    assert not [m for m in caught if 'scheduler.step()' in m]
    assert runner.iter == 2


def test_unreadable_training_image_is_skipped_in_loader_workers(
        tmp_path, tiny_train_config, capfd):
    data_root = generate_ade20k(str(tmp_path / 'data'), num_train=4,
                                num_val=1, size=(48, 48))
    broken = os.path.join(data_root, 'images', 'training',
                          'ADE_train_00000002.jpg')
    with open(broken, 'wb') as f:
        f.write(b'not a jpeg')

    def loader(pipeline):
        return dict(num_workers=1, dataset=dict(pipeline=pipeline))

    # 2 iterations of 2 from the 4 images' shuffled permutation: every
    # image is drawn
    with pytest.raises(Exception, match=f'failed to load image: {broken}'):
        train(tmp_path / 'plain', tiny_train_config, data_root,
              train_dataloader=loader(LOADERS + AFTER_LOADING))
    runner, _, _ = train(
        tmp_path / 'skip', tiny_train_config, data_root,
        train_dataloader=loader(
            [dict(type='SkipUnreadable', transforms=LOADERS)] +
            AFTER_LOADING))
    assert runner.iter == 2
    out, err = capfd.readouterr()
    assert f'skipping unreadable sample {broken}' in out + err
