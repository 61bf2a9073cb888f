"""The training speed switches on a GPU, through tools/train.py: bf16 AMP
only where native, fused AdamW on CUDA, channels-last and a compiled backbone
train and write a finite checkpoint."""
from __future__ import annotations

import pytest
import torch

from gpu_helpers import check_ok, scenes_config

ITERS = 10


def train_with(tmp_path, scenes: str, run_script,
               **switches: object) -> tuple[str, dict]:
    config = scenes_config(
        tmp_path / 'speed.py', scenes,
        optim_wrapper=dict(type='AmpOptimWrapper',
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
    output = check_ok(run_script('tools/train.py', config, '--work-dir',
                                 tmp_path / 'work'))
    checkpoint = torch.load(tmp_path / 'work' / f'iter_{ITERS}.pth',
                            map_location='cpu', weights_only=False)
    for name, value in checkpoint['state_dict'].items():
        assert torch.isfinite(value.float()).all(), name
    return output, checkpoint


@pytest.mark.gpu(bf16=True)
def test_bf16_switch_trains_in_bf16(tmp_path, scenes, run_script) -> None:
    output, _ = train_with(tmp_path, scenes, run_script, bf16=True)
    assert 'train_speed: AMP in bf16' in output


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
