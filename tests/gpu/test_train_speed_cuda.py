"""The training speed switches on a GPU, through tools/train.py: bf16 AMP
only where native, fused AdamW on CUDA, channels-last and a compiled backbone
train and write a finite checkpoint.

A probe hook (written into the test's folder and imported by the config)
records, in the first iteration, the dtype each Conv2d and Linear computes in
(its output's) and the first loss.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

from .gpu_helpers import REPO, check_ok, scenes_config

ITERS = 10
PROBE = '''
import json
import os

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class DtypeProbeHook(Hook):
    def before_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) \\
            else runner.model
        self.dtypes = set()
        self.handles = [
            m.register_forward_hook(
                lambda mod, args, out: self.dtypes.add(str(out.dtype)))
            for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if batch_idx != 0:
            return
        for handle in self.handles:
            handle.remove()
        with open(os.path.join(runner.work_dir, 'probe.json'), 'w') as f:
            json.dump(dict(dtypes=sorted(self.dtypes),
                           loss=float(outputs['loss'])), f)
'''


def train_with(tmp_path, scenes: str, run_script,
               wrapper: str = 'AmpOptimWrapper', probe: bool = False,
               **switches: object) -> tuple[str, dict]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / 'dtype_probe.py').write_text(PROBE)
    probed = dict(custom_imports=dict(imports=['convseg', 'dtype_probe'],
                                      allow_failed_imports=False),
                  custom_hooks=[dict(type='DtypeProbeHook')]) if probe else {}
    config = scenes_config(
        tmp_path / 'speed.py', scenes, **probed,
        optim_wrapper=dict(type=wrapper,
                           optimizer=dict(type='AdamW', lr=1e-3,
                                          weight_decay=0.05),
                           constructor='LayerDecayOptimWrapperConstructor',
                           paramwise_cfg=dict(decay_rate=0.9,
                                              decay_type='stage_wise',
                                              num_layers=4)),
        param_scheduler=[],
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=ITERS,
                       val_interval=ITERS),
        default_hooks=dict(checkpoint=dict(interval=ITERS)),
        train_speed=switches)
    # the config imports dtype_probe from the test's folder
    path = [str(tmp_path), REPO] + [p for p in [os.environ.get('PYTHONPATH')]
                                    if p]
    output = check_ok(run_script('tools/train.py', config, '--work-dir',
                                 tmp_path / 'work',
                                 env=dict(PYTHONPATH=os.pathsep.join(path))))
    checkpoint = torch.load(tmp_path / 'work' / f'iter_{ITERS}.pth',
                            map_location='cpu', weights_only=False)
    for name, value in checkpoint['state_dict'].items():
        assert torch.isfinite(value.float()).all(), name
    if probe:
        checkpoint['probe'] = json.loads(
            (tmp_path / 'work' / 'probe.json').read_text())
    return output, checkpoint


@pytest.mark.gpu(bf16=True)
def test_bf16_switch_trains_in_bf16(tmp_path, scenes, run_script) -> None:
    output, checkpoint = train_with(tmp_path / 'bf16', scenes, run_script,
                                    probe=True, bf16=True)
    assert 'train_speed: AMP in bf16' in output
    # every conv and linear computes in bf16 under the switch
    assert checkpoint['probe']['dtypes'] == ['torch.bfloat16']
    _, fp32 = train_with(tmp_path / 'fp32', scenes, run_script,
                         wrapper='OptimWrapper', probe=True)
    assert fp32['probe']['dtypes'] == ['torch.float32']
    # the same seed, weights and first batch: the first loss within bf16's
    # bounds of fp32's (8 bits of mantissa: ~4e-3 a rounding)
    first, reference = checkpoint['probe']['loss'], fp32['probe']['loss']
    assert first != reference
    assert first == pytest.approx(reference, rel=2e-2)


@pytest.mark.gpu
def test_fused_channels_last_compile_train(tmp_path, scenes,
                                           run_script) -> None:
    output, checkpoint = train_with(tmp_path, scenes, run_script,
                                    fused_adamw=True,
                                    channels_last=True,
                                    compile_backbone=True)
    for line in ('train_speed: fused AdamW on cuda',
                 'train_speed: channels-last (25 conv weights)',
                 'train_speed: torch.compile (backbone)'):
        assert line in output
    assert checkpoint['optimizer']['param_groups'][0]['fused'] is True
    weight = checkpoint['state_dict']['backbone.downsample_layers.0.0.weight']
    assert weight.is_contiguous(memory_format=torch.channels_last)
