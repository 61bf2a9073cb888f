"""Training steps of UPerNet-ConvNeXt-T with mmengine's AmpOptimWrapper and
the layer-decay constructor, in fp16 and in bf16, on a GPU.

The expected learning rates come from the recipe's rule applied to the
parameter names here, not from the backbone's hook.
"""
from __future__ import annotations

import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import AmpOptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope

import convseg  # noqa: F401
from mmseg.registry import MODELS
from .gpu_helpers import REPO, random_batch

CONFIG = osp.join(REPO, 'configs', 'upernet_convnext_t_ade20k.py')
NUM_LAYERS, DECAY_RATE, BASE_LR, BASE_WD = 6, 0.9, 1e-4, 0.05


def stage_wise_lr(name: str) -> float:
    """The recipe's lr for a parameter of UPerNet-ConvNeXt (stage_wise,
    num_layers 6): stem and downsampling 0, stage i i + 1, the rest 7."""
    match = re.match(r'backbone\.(downsample_layers|stages)\.(\d)', name)
    if match is None:
        layer = NUM_LAYERS + 1
    else:
        layer = 0 if match[1] == 'downsample_layers' else int(match[2]) + 1
    return BASE_LR * DECAY_RATE**(NUM_LAYERS + 1 - layer)


def build_amp(dtype: str, loss_scale: object):
    """The ConvNeXt-T config's model on the GPU (random weights) and its
    AmpOptimWrapper with the given autocast dtype and loss scale."""
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.init_cfg = None
    # no drop path: every block gets a gradient in every step
    cfg.model.backbone.drop_path_rate = 0.0
    cfg.optim_wrapper.dtype = dtype
    cfg.optim_wrapper.loss_scale = loss_scale
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).cuda().train()
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


@pytest.mark.gpu
def test_amp_optim_wrapper_keeps_the_layer_decay_groups() -> None:
    model, wrapper = build_amp('float16', 512.0)
    assert type(wrapper) is AmpOptimWrapper
    assert wrapper.loss_scaler.get_scale() == 512.0
    owner = {id(p): g for g in wrapper.optimizer.param_groups
             for p in g['params']}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(owner) == {id(p) for p in trainable.values()}
    for name, param in trainable.items():
        group = owner[id(param)]
        assert group['lr'] == pytest.approx(stage_wise_lr(name), rel=1e-12)
        no_decay = param.ndim == 1 or name.endswith('.bias')
        assert group['weight_decay'] == (0.0 if no_decay else BASE_WD), name


@pytest.mark.parametrize('dtype', [
    pytest.param('float16', marks=pytest.mark.gpu),
    pytest.param('bfloat16', marks=pytest.mark.gpu(bf16=True)),
])
def test_amp_training_step(dtype: str) -> None:
    model, wrapper = build_amp(dtype, dict(init_scale=512.0))
    assert wrapper.cast_dtype == getattr(torch, dtype)
    seen = []
    model.backbone.downsample_layers[0][0].register_forward_hook(
        lambda module, args, out: seen.append(out.dtype))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = []
    for step in range(3):
        log_vars = model.train_step(
            random_batch((512, 512), 2, 150, seed=step), wrapper)
        losses.append(log_vars['loss'].item())
    # the convs ran in the autocast dtype; the weights stay float32 and
    # every one of them moved
    assert seen == [getattr(torch, dtype)] * 3
    assert all(torch.isfinite(torch.tensor(losses)))
    for name, param in model.named_parameters():
        assert param.dtype == torch.float32, name
        assert not torch.equal(param, before[name]), name
    # no overflow at this scale: no step skipped, the scale unchanged (it
    # would double only after 2000 steps)
    assert wrapper.loss_scaler.get_scale() == 512.0
