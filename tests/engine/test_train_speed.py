"""The training speed switches on CPU: each builds, trains, and matches the
default path within a stated tolerance.

The model is the quickstart's UPerNet (ConvNeXt-atto widths at half depth)
built from its real config; dropout is off so that two runs see the same
computation. Each switch is compared against the same model trained the
default way from the same weights on the same batch.
"""
from __future__ import annotations

import copy
import logging

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
import torch._inductor.config
from torch._dynamo.utils import counters

import convseg  # noqa: F401
from convseg.engine import CPUAutocastOptimWrapper, train_speed
from convseg.engine.train_speed import (TrainSpeedConfigError,
                                        compile_backbone,
                                        fused_adamw_available, read_switches,
                                        to_channels_last, use_bf16,
                                        use_fused_adamw)
from convseg.models import convnext
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

CONFIG = 'configs/quickstart_convnext_atto_scenes.py'  # from the repo root
SIZE = 64


@pytest.fixture(scope='module')
def quickstart_cfg(repo_root):
    """``quickstart_cfg(**train_speed)``: the quickstart config, dropout
    off, with ``train_speed`` set."""

    def load(**train_speed) -> Config:
        cfg = Config.fromfile(str(repo_root / CONFIG))
        cfg.model.decode_head.dropout_ratio = 0.0
        cfg.model.auxiliary_head.dropout_ratio = 0.0
        cfg.train_speed = train_speed
        return cfg

    return load


def build(cfg: Config, state: dict | None = None):
    """Model (train mode, BN) and optim wrapper of ``cfg``."""
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if state is not None:
        model.load_state_dict(state)
    model.train()
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


def batch(seed: int = 0) -> dict:
    """Four random images with random labels of the 6 classes."""
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(4):
        inputs.append(torch.randint(0, 256, (3, SIZE, SIZE),
                                    dtype=torch.uint8, generator=gen))
        sample = SegDataSample(metainfo=dict(img_shape=(SIZE, SIZE),
                                             ori_shape=(SIZE, SIZE),
                                             pad_shape=(SIZE, SIZE)))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, 6, (1, SIZE, SIZE), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def first_grads(model) -> dict:
    """Gradients of the loss on ``batch(0)`` at the current weights (the
    gradients are cleared again)."""
    data = model.data_preprocessor(batch(0), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


def train(model, optim_wrapper,
          steps: int) -> tuple[list[float], dict, dict]:
    """First-step gradients, the losses of ``steps`` train steps, and the
    weights after the first step."""
    grads = first_grads(model)
    losses, after_first = [], {}
    for step in range(steps):
        losses.append(
            model.train_step(batch(step), optim_wrapper)['loss'].item())
        if step == 0:
            after_first = {k: v.clone() for k, v in model.state_dict().items()}
    return losses, grads, after_first


def max_rel(a: dict, b: dict) -> float:
    """max |a - b| over all tensors, relative to max |a| over all tensors
    (per tensor would divide by ~0 for biases that BatchNorm cancels)."""
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    return diff / max(v.float().abs().max().item() for v in a.values())


@pytest.fixture(scope='module')
def reference(quickstart_cfg) -> tuple[dict, list[float], dict, dict]:
    """Initial weights, then the default path's losses over 3 steps,
    first-step gradients and the weights after the first step."""
    model, optim_wrapper = build(quickstart_cfg())
    start = copy.deepcopy(model.state_dict())
    return (start, ) + train(model, optim_wrapper, 3)


def test_channels_last_trains_like_default(reference, quickstart_cfg) -> None:
    start, losses, grads, _ = reference
    model, optim_wrapper = build(quickstart_cfg(), start)
    # 4-D weights: backbone 4 down-sampling convs + 6 depthwise convs;
    # UPerHead 3 lateral + 3 FPN + 4 pooling + 2 bottleneck convs + conv_seg;
    # FCNHead 1 conv + conv_seg
    assert to_channels_last(model, optim_wrapper) == 10 + 13 + 2
    weight = model.backbone.downsample_layers[0][0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    cl_losses, cl_grads, _ = train(model, optim_wrapper, 3)
    # same weights, same batch: loss and gradients agree to float rounding
    # (different summation order); later losses follow within 1e-4
    # (gradients: 1.8e-4 of the largest, in the stem conv's weight gradient:
    # oneDNN's channels-last kernel sums the batch's 4096 stem positions in
    # another order; the NCHW one is within 3e-6 of a float64 run; AMD EPYC
    # Zen 3 and Zen 4 alike)
    assert cl_losses[0] == pytest.approx(losses[0], rel=1e-5)
    assert max_rel(grads, cl_grads) < 3e-4
    assert cl_losses == pytest.approx(losses, rel=1e-4)
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_converts_resumed_optimizer_state(
        reference, quickstart_cfg) -> None:
    model, optim_wrapper = build(quickstart_cfg(), reference[0])
    model.train_step(batch(0), optim_wrapper)
    to_channels_last(model, optim_wrapper)
    converted = 0
    for param in model.parameters():
        if param.dim() == 4:
            state = optim_wrapper.optimizer.state[param]
            for key in ('exp_avg', 'exp_avg_sq'):
                assert state[key].stride() == param.stride()
                converted += 1
    assert converted == 2 * 25


@pytest.mark.skipif(not fused_adamw_available('cpu'),
                    reason='this torch has no fused AdamW on CPU')
def test_fused_adamw_trains_like_default(reference, quickstart_cfg) -> None:
    start, losses, _, after_first = reference
    model, optim_wrapper = build(quickstart_cfg(), start)
    assert not any(g['fused'] for g in optim_wrapper.optimizer.param_groups)
    use_fused_adamw(optim_wrapper.optimizer, 'cpu')
    assert all(g['fused'] for g in optim_wrapper.optimizer.param_groups)
    fused_losses, _, fused_after_first = train(model, optim_wrapper, 3)
    assert fused_losses[0] == losses[0]
    # one step from equal weights and gradients: the same AdamW update to
    # float rounding. A step moves a weight by up to lr = 3e-3; the two
    # kernels round differently, by a few float32 ulps of weights near 1
    # (ulp 1.2e-7), so 1e-6 is 3000 times finer than one step.
    assert max((after_first[k] - v).abs().max().item()
               for k, v in fused_after_first.items()) < 1e-6
    assert fused_losses == pytest.approx(losses, rel=1e-5)


def test_compile_backbone_trains_like_default(reference,
                                              quickstart_cfg) -> None:
    start, losses, grads, _ = reference
    model, optim_wrapper = build(quickstart_cfg(), start)
    compile_backbone(model, True)
    assert set(model.state_dict()) == set(start)
    # as in a fresh process that compiles before any eager step: no tap
    # matrices cached yet
    convnext._SHIFT_BASES.clear()
    counters.clear()
    # inductor's C++ kernels without its vector code: on 2 cores that
    # halves the compile (about 30 s against 58 s cold, forward and
    # backward), and what is checked here is convseg's part: one graph,
    # and the losses and gradients of eager training
    with torch._inductor.config.patch({'cpp.vec_isa_ok': False}):
        compiled_losses, compiled_grads, _ = train(model, optim_wrapper, 2)
    # the backbone is one graph: a break (e.g. in the small-map depthwise
    # conv's cache) would compile each block apart, about 26 graphs
    assert dict(counters['graph_break']) == {}
    assert counters['stats']['unique_graphs'] == 1
    assert compiled_losses[0] == pytest.approx(losses[0], rel=1e-5)
    # gradients: against a float64 run of the same step, the eager ones are
    # within 3e-6 of the largest, the compiled ones within 1.8e-4 with
    # inductor's vector code and 9.1e-4 with its scalar code as here (AMD
    # EPYC Zen 4; under 3e-4 on a Zen 3), the worst always in the stem conv's
    # weight gradient, a float32 sum over the batch's 4096 stem positions
    # whose order the kernels choose. A wrong gradient is off by O(1).
    assert max_rel(grads, compiled_grads) < 1.5e-3
    assert compiled_losses == pytest.approx(losses[:2], rel=1e-4)


def applied(optim_wrapper: OptimWrapper) -> list[tuple[int, str]]:
    """Apply the bf16 switch on CPU; the (level, message) pairs it
    logged."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        use_bf16(optim_wrapper, 'cpu')
    finally:
        logger.removeHandler(handler)
    return [(r.levelno, r.getMessage()) for r in records]


on_cpu = pytest.mark.skipif(torch.cuda.is_available(),
                            reason='the CPU path of the bf16 switch; with '
                            'CUDA the switch sets AMP\'s dtype')


@on_cpu
def test_cpu_bf16_without_native_bf16_warns_and_stays_fp32(
        quickstart_cfg, monkeypatch) -> None:
    monkeypatch.setattr(train_speed, 'cpu_has_native_bf16', lambda: False)
    monkeypatch.setattr(train_speed, 'cpu_model', lambda: 'Old CPU')
    _, optim_wrapper = build(quickstart_cfg())
    assert applied(optim_wrapper) == [(
        logging.WARNING,
        'train_speed.bf16: this CPU (Old CPU) has no native bf16 '
        '(avx512_bf16 or AMX); it trains in fp32')]
    assert type(optim_wrapper) is OptimWrapper


@on_cpu
def test_cpu_bf16_leaves_another_wrapper_with_a_warning(
        quickstart_cfg, monkeypatch) -> None:
    monkeypatch.setattr(train_speed, 'cpu_has_native_bf16', lambda: True)
    cfg = quickstart_cfg()
    # AmpOptimWrapper cannot be built without a GPU; any other wrapper is
    # left alone the same way
    cfg.optim_wrapper.type = 'CPUAutocastOptimWrapper'
    _, optim_wrapper = build(cfg)
    assert applied(optim_wrapper) == [(
        logging.WARNING,
        "train_speed.bf16: optim wrapper 'CPUAutocastOptimWrapper' is left "
        'as it is (CPU bf16 autocast replaces only OptimWrapper)')]
    assert type(optim_wrapper) is CPUAutocastOptimWrapper


@on_cpu
def test_cpu_bf16_trains_in_bf16_near_fp32(reference, quickstart_cfg,
                                           monkeypatch) -> None:
    start, losses, grads, _ = reference
    monkeypatch.setattr(train_speed, 'cpu_has_native_bf16', lambda: True)
    monkeypatch.setattr(train_speed, 'cpu_model', lambda: 'New CPU')
    model, optim_wrapper = build(quickstart_cfg(), start)
    optimizer = optim_wrapper.optimizer
    assert applied(optim_wrapper) == [
        (logging.INFO, 'train_speed: bf16 autocast on the CPU (New CPU)')]
    # the same wrapper object (the param schedulers hold it), now autocasting
    assert type(optim_wrapper) is CPUAutocastOptimWrapper
    assert optim_wrapper.optimizer is optimizer
    seen = []
    for conv in (model.backbone.downsample_layers[0][0],
                 model.decode_head.conv_seg):
        conv.register_forward_hook(
            lambda module, args, out: seen.append(out.dtype))
    bf16_losses = [model.train_step(batch(step), optim_wrapper)['loss'].item()
                   for step in range(3)]
    assert seen == [torch.bfloat16] * 6
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # bf16 keeps 8 bits of mantissa (relative rounding 2**-9 = 2e-3 per
    # operation): the losses of the same steps agree within 1e-2, measured
    # 1e-3 to 3e-3; fp32 against fp32 agrees within 1e-5
    assert bf16_losses == pytest.approx(losses, rel=1e-2)
    assert bf16_losses != pytest.approx(losses, rel=1e-5)


@pytest.mark.parametrize('train_speed, message', [
    (dict(channel_last=True),
     "train_speed has no switch 'channel_last'; the switches are "
     'channels_last, fused_adamw, bf16, compile_backbone'),
    (dict(bf16='yes'), "train_speed.bf16 must be True or False, got 'yes'"),
    (dict(compile_backbone=1),
     'train_speed.compile_backbone must be True, False, a torch.compile '
     'backend name or a dict of torch.compile arguments, got 1'),
])
def test_bad_switch_is_named(train_speed: dict, message: str,
                             quickstart_cfg) -> None:
    with pytest.raises(TrainSpeedConfigError) as err:
        read_switches(quickstart_cfg(**train_speed))
    assert str(err.value) == message


def test_train_tool_applies_the_switches(tmp_path, repo_root,
                                         run_script) -> None:
    from convseg.datasets.synthetic import generate_scenes
    data_root = generate_scenes(str(tmp_path / 'data'), num_train=8,
                                num_val=2, size=(64, 64))
    work_dir = tmp_path / 'work'
    result = run_script(
        'tools/train.py', repo_root / CONFIG, '--work-dir',
        str(work_dir), '--cfg-options', f'data_root={data_root}',
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=3',
        'default_hooks.checkpoint.interval=2',
        'train_dataloader.batch_size=2', 'param_scheduler=[]',
        'train_speed.channels_last=True', 'train_speed.fused_adamw=True',
        # aot_eager: dynamo and autograd tracing without C++ code
        # generation, which costs minutes on a small CPU
        'train_speed.compile_backbone=aot_eager')
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    for line in ('train_speed: fused AdamW on cpu',
                 'train_speed: channels-last (25 conv weights)',
                 'train_speed: torch.compile (backbone)'):
        assert line in log
    state = torch.load(work_dir / 'iter_2.pth', weights_only=False)
    assert state['optimizer']['param_groups'][0]['fused'] is True
    weight = state['state_dict']['backbone.downsample_layers.0.0.weight']
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(weight).all()
