"""The inference fast path agrees with the plain model and never trains.

A tiny UPerNet-ConvNeXt from the project's base config, whose BatchNorm
statistics are the true statistics of its own activations (so folding them is
tested on non-trivial values), is compared with itself prepared by
``prepare_for_inference`` on several image sizes, odd ones included, in whole
and slide mode. The pieces are checked against independent computations:
Winograd against ``F.conv2d``, the resized-parts conv against mmcv's
ConvModule on the concatenated ``F.interpolate`` outputs.
"""
import copy
import json
from fractions import Fraction

import convseg  # noqa: F401  (first: installs the mmcv.ops shim)

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, save_checkpoint
from mmseg.models.segmentors import EncoderDecoder

from convseg import hardware as fast_cpu
from convseg.apis import init_model
from convseg.fast import (KERNELS, FastEncoderDecoder, KernelChooser,
                          UnknownKernelError, prepare_for_inference)
from convseg.fast import gpu as fast_gpu
from convseg.fast import kernels as fast_kernels
from convseg.fast import winograd as fast_winograd
from convseg.fast.errors import (EDITED_WEIGHTS_ERROR,
                                 PREPARED_TRAINING_ERROR, STALE_WEIGHTS_ERROR,
                                 TRAINING_ERROR)
from convseg.fast.folding import FoldedConv
from convseg.fast.nhwc import to_nchw, to_nhwc
from convseg.fast.resize_conv import (ConcatResizeConv, ConcatResizePointwise,
                                     resize_matrix)

# the tests' tiny model with heads of 64 channels: the width at which the
# shape rule starts to pick Winograd, so that the default path runs it on
# the larger maps; BatchNorm, to be folded
TINY = """
_base_ = [{base!r}]
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    decode_head=dict(channels=64, num_classes=7, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=7, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))
"""


@pytest.fixture(autouse=True)
def default_kernels(monkeypatch, tmp_path):
    """The default kernels (no timing), and no decisions in the user's
    cache; tests of measuring turn it on themselves."""
    monkeypatch.setenv(fast_kernels.MEASURE_ENV, '0')
    monkeypatch.setenv(fast_kernels.CACHE_ENV, str(tmp_path / 'kernels.json'))


KERNEL_CHOICES = [(op, name) for op, names in KERNELS.items()
                  for name, kernel in names.items()
                  if torch.float32 in kernel.dtypes]
BF16_KERNEL_CHOICES = [(op, name) for op, names in KERNELS.items()
                       for name, kernel in names.items()
                       if torch.bfloat16 in kernel.dtypes]


def calibrate_batchnorm(model: EncoderDecoder, seed: int) -> None:
    """Set every BatchNorm to the statistics of its own inputs, and its
    affine parameters to random values."""
    gen = torch.Generator().manual_seed(seed)
    norms = [
        m for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches
        with torch.no_grad():
            norm.weight.copy_(
                torch.rand(norm.weight.shape, generator=gen) + 0.5)
            norm.bias.copy_(torch.randn(norm.bias.shape, generator=gen) * .2)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            images = torch.randn(4, 3, 96, 96, generator=gen) * 2 + 0.5
            model.decode_head(model.extract_feat(images))
    model.eval()


@pytest.fixture(scope='module')
def config(tmp_path_factory, tiny_config):
    path = tmp_path_factory.mktemp('fast') / 'tiny.py'
    path.write_text(TINY.format(base=str(tiny_config)))
    return str(path)


@pytest.fixture(scope='module')
def checkpoint(config, tmp_path_factory):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)
    calibrate_batchnorm(model, seed=1)
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    save_checkpoint(dict(state_dict=model.state_dict(), meta={}), str(path))
    return str(path)


@pytest.fixture
def plain(config, checkpoint):
    return init_model(config, checkpoint, fast=False)


def metas_for(height, width, batch=1):
    return [
        dict(img_shape=(height, width),
             ori_shape=(height, width),
             pad_shape=(height, width),
             padding_size=[0, 0, 0, 0]) for _ in range(batch)
    ]


#: max |fast - plain| / max |plain| of the logits each path may reach, about
#: five times what is measured (8.5e-7 direct, up to 2.1e-6 Winograd; AMD
#: EPYC Zen 5, torch 2.13); bf16 keeps 8 bits of mantissa
FP32_BOUND = 1e-5
DIRECT_BOUND = 5e-6
BF16_BOUND = 0.05


def assert_agree(reference, result, bound=FP32_BOUND, min_equal=0.999,
                 min_clear=0.9):
    """Logits within ``bound`` relative; argmax equal wherever the top two
    classes of ``reference`` are more than twice that apart (so no error
    within the bound can swap them: at least ``min_clear`` of the pixels),
    and on ``min_equal`` of all pixels; returns the relative error."""
    assert result.shape == reference.shape
    assert result.dtype == torch.float32
    scale = reference.abs().max()
    rel = ((result - reference).abs().max() / scale).item()
    assert rel <= bound
    top2 = reference.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * bound * scale
    same = result.argmax(1) == reference.argmax(1)
    assert clear.float().mean().item() >= min_clear
    assert bool(same[clear].all())
    assert same.float().mean().item() >= min_equal
    return rel


def test_batchnorm_statistics_are_not_trivial(plain):
    norm = plain.decode_head.fpn_bottleneck.norm
    assert (norm.running_mean.abs() > 1e-3).float().mean() > 0.5
    assert (norm.running_var - 1).abs().max() > 0.1


@pytest.mark.parametrize('shape,batch', [((64, 64), 1), ((61, 83), 1),
                                         ((97, 50), 2), ((128, 96), 1)])
def test_fast_path_agrees_with_plain_model(plain, shape, batch):
    prepared = prepare_for_inference(copy.deepcopy(plain))
    assert type(prepared) is FastEncoderDecoder
    images = torch.randn(
        batch, 3, *shape, generator=torch.Generator().manual_seed(
            shape[0])) * 1.5
    with torch.no_grad():
        reference = plain.inference(images, metas_for(*shape, batch))
        result = prepared.inference(images, metas_for(*shape, batch))
    assert_agree(reference, result)


@pytest.mark.parametrize('op,name', KERNEL_CHOICES)
def test_every_forced_kernel_agrees(plain, op, name):
    prepared = prepare_for_inference(copy.deepcopy(plain),
                                     kernels={op: name})
    assert prepared.fast_backbone is not None
    images = torch.randn(2, 3, 70, 93,
                         generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        reference = plain.inference(images, metas_for(70, 93, 2))
        result = prepared.inference(images, metas_for(70, 93, 2))
    assert_agree(reference, result,
                 DIRECT_BOUND if name == 'direct' else FP32_BOUND)
    decisions = prepared.kernel_chooser.decisions
    # forced kernels are used without being recorded as decisions
    assert not any(key.startswith(op) for key in decisions)


def test_measured_kernels_agree_and_are_cached(plain, tmp_path,
                                               monkeypatch):
    cache = tmp_path / 'measured.json'
    monkeypatch.setenv(fast_kernels.CACHE_ENV, str(cache))
    prepared = prepare_for_inference(copy.deepcopy(plain), measure=True)
    images = torch.randn(1, 3, 64, 64,
                         generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        reference = plain.inference(images, metas_for(64, 64))
        result = prepared.inference(images, metas_for(64, 64))
    assert_agree(reference, result)
    stored = json.loads(cache.read_text())[fast_kernels.machine_key()]
    decisions = prepared.kernel_chooser.decisions
    assert sorted(stored) == sorted(decisions)
    for key, entry in decisions.items():
        assert entry['source'] == 'measured'
        assert set(entry['ms']) == {
            name for name, kernel in KERNELS[key.split()[0]].items()
            if torch.float32 in kernel.dtypes}
        assert stored[key]['kernel'] == entry['kernel']
    # a second model reads the decisions instead of timing again
    again = prepare_for_inference(copy.deepcopy(plain), measure=True)
    with torch.no_grad():
        again.inference(images, metas_for(64, 64))
    assert {e['source'] for e in again.kernel_chooser.decisions.values()
            } == {'cache'}


class FakeClock:
    """A clock that each candidate advances by its own cost, in seconds."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def runner(self, costs, calls):
        def run(name):
            calls.append(name)
            self.now += costs[name]
        return run


def test_chooser_keeps_the_fastest_and_the_default_within_the_margin(
        tmp_path, monkeypatch):
    monkeypatch.setenv(fast_kernels.CACHE_ENV, str(tmp_path / 'k.json'))
    clock = FakeClock()
    chooser = KernelChooser(measure=True, clock=clock, dtype=torch.bfloat16)
    x = torch.empty(1, 4, 5, 8, dtype=torch.bfloat16)
    calls = []
    fastest = chooser.choose('pointwise', x, 16,
                             clock.runner({'mkl': 0.02, 'onednn': 0.002,
                                           'onednn_linear': 0.03}, calls))
    assert fastest == 'onednn'
    # each candidate: one warm-up and REPEATS timed runs, interleaved
    assert calls.count('mkl') == calls.count('onednn') == \
        calls.count('onednn_linear') == 1 + fast_kernels.REPEATS
    assert calls[3:9] == ['mkl', 'onednn', 'onednn_linear', 'onednn_linear',
                          'onednn', 'mkl']
    key = 'pointwise 8->16 1x4x5 bfloat16'
    assert chooser.decisions[key] == dict(
        kernel='onednn', ms=dict(mkl=20.0, onednn=2.0, onednn_linear=30.0),
        source='measured')
    # within the margin, the default (mkl) stays
    within = KernelChooser(measure=True, clock=clock, dtype=torch.bfloat16)
    assert within.choose('pointwise',
                         torch.empty(1, 4, 6, 8, dtype=torch.bfloat16), 16,
                         clock.runner({'mkl': 0.02, 'onednn': 0.0195,
                                       'onednn_linear': 0.0196},
                                      [])) == 'mkl'
    assert fast_kernels.pick({'mkl': 1.0, 'onednn': 0.96}, 'mkl') == 'mkl'
    assert fast_kernels.pick({'mkl': 1.0, 'onednn': 0.94}, 'mkl') == 'onednn'
    calls.clear()
    # decided once per op and shape
    assert chooser.choose('pointwise', x, 16,
                          clock.runner({'mkl': 0, 'onednn': 0}, calls)) == (
                              'onednn')
    assert calls == []
    assert chooser.table() == (f'  {key:<44} {"onednn":<16} (measured)  '
                               'mkl 20.0 ms, onednn 2.0 ms, onednn_linear '
                               '30.0 ms')
    # a decision cached before a candidate joined the table is measured again
    again = KernelChooser(measure=True, clock=clock, dtype=torch.bfloat16)
    data = json.loads((tmp_path / 'k.json').read_text())
    for entry in data[fast_kernels.machine_key()].values():
        del entry['ms']['onednn_linear']
    (tmp_path / 'k.json').write_text(json.dumps(data))
    calls.clear()
    assert again.choose('pointwise', x, 16, clock.runner(
        {'mkl': 0.02, 'onednn': 0.03, 'onednn_linear': 0.002},
        calls)) == 'onednn_linear'
    assert calls.count('onednn_linear') == 1 + fast_kernels.REPEATS


def test_defaults_follow_the_table():
    chooser = KernelChooser(measure=False)
    assert chooser.default('conv3x3', 64, 64, 16, 16) == 'winograd_mkl'
    assert chooser.default('conv3x3', 64, 64, 15, 16) == 'direct'
    assert chooser.default('conv3x3', 63, 64, 16, 16) == 'direct'
    assert chooser.default('pointwise', 64, 64, 16, 16) == 'mkl'
    bf16 = KernelChooser(measure=False, dtype=torch.bfloat16)
    assert bf16.candidates == {'conv3x3': ('direct', 'direct_packed'),
                               'pointwise': ('mkl', 'onednn',
                                             'onednn_linear')}
    assert bf16.default('conv3x3', 64, 64, 16, 16) == 'direct'


def test_measuring_off_by_environment_runs_nothing(monkeypatch):
    monkeypatch.setenv(fast_kernels.MEASURE_ENV, '0')
    chooser = KernelChooser()

    def refuse():
        raise AssertionError('measured although measuring is off')

    assert chooser.choose('pointwise', torch.empty(1, 2, 2, 3), 4,
                          lambda name: refuse()) == 'mkl'
    assert chooser.decisions['pointwise 3->4 1x2x2 float32'] == dict(
        kernel='mkl', source='default')


def test_unknown_forced_kernel_is_named(plain):
    with pytest.raises(UnknownKernelError) as err:
        prepare_for_inference(plain, kernels={'conv3x3': 'fft'})
    assert str(err.value) == (
        "unknown kernel conv3x3='fft'; the candidates are conv3x3: "
        'winograd_mkl|winograd_onednn|direct|direct_packed, pointwise: '
        'mkl|onednn|onednn_linear')
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownKernelError) as err:
        KernelChooser(force={'pointwse': 'mkl'})
    assert str(err.value).startswith("unknown kernel pointwse='mkl'; the ")
    layer = fast_kernels.Pointwise(torch.ones(2, 3), None,
                                   KernelChooser(measure=False))
    with pytest.raises(UnknownKernelError, match="pointwise='mlk'"):
        layer.run('mlk', torch.ones(1, 1, 1, 3), None)


def test_machine_key_names_cpu_threads_and_torch():
    key = fast_kernels.machine_key()
    assert key == (f'{fast_cpu.cpu_model()} | {torch.get_num_threads()} '
                   f'threads | torch {torch.__version__}')


# ----------------------------------------------------------- bf16 precision


@pytest.mark.skipif(not fast_cpu.cpu_has_native_bf16(),
                    reason='this CPU has no native bf16')
def test_bf16_precision_runs_bf16_and_returns_float32(plain):
    prepared = prepare_for_inference(copy.deepcopy(plain), precision='bf16')
    assert prepared.fast_head.conv_seg.weight.dtype == torch.bfloat16
    seen = []
    prepared.backbone.downsample_layers[0][0].register_forward_hook(
        lambda module, args, out: seen.append(out.dtype))
    images = torch.randn(1, 3, 80, 80,
                         generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        reference = plain.inference(images, metas_for(80, 80))
        result = prepared.inference(images, metas_for(80, 80))
    assert seen == [torch.bfloat16]
    # random weights make near-ties: bf16 moves a few of them
    assert assert_agree(reference, result, BF16_BOUND, 0.98, 0.3) > 1e-4
    # 3x3 convs run directly in bf16
    conv = prepared.fast_head.fpn_convs[0].conv
    assert conv.kernel_for(torch.empty(1, 32, 32, 64,
                                       dtype=torch.bfloat16)) == 'direct'


@pytest.mark.skipif(not fast_cpu.cpu_has_native_bf16(),
                    reason='this CPU has no native bf16')
@pytest.mark.parametrize('op,name', BF16_KERNEL_CHOICES)
def test_every_forced_bf16_kernel_agrees(plain, op, name):
    prepared = prepare_for_inference(copy.deepcopy(plain), precision='bf16',
                                     kernels={op: name})
    images = torch.randn(1, 3, 80, 80,
                         generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        reference = plain.inference(images, metas_for(80, 80))
        result = prepared.inference(images, metas_for(80, 80))
    # the bounds of test_bf16_precision_runs_bf16_and_returns_float32
    assert_agree(reference, result, BF16_BOUND, 0.98, 0.3)


def test_bf16_is_refused_without_native_support(plain, monkeypatch):
    monkeypatch.setattr(fast_cpu, 'cpu_flags',
                        lambda: frozenset({'avx2', 'avx512f'}))
    monkeypatch.setattr(fast_cpu, 'cpu_model', lambda: 'Some CPU')
    with pytest.raises(ValueError) as err:
        prepare_for_inference(plain, precision='bf16')
    assert str(err.value) == (
        "precision='bf16' needs a CPU with native bf16 arithmetic (the "
        'avx512_bf16 or amx_bf16 flag), and this one (Some CPU) has '
        "neither: emulated bf16 is slower than float32. Use "
        "precision='fp32'.")
    assert err.value.for_tools().endswith(
        "precision='fp32'. With the convseg tools, pass --precision fp32.")
    monkeypatch.setattr(fast_cpu, 'cpu_flags',
                        lambda: frozenset({'avx2', 'amx_bf16'}))
    assert fast_cpu.cpu_has_native_bf16()


def test_bf16_refuses_forced_winograd(plain, monkeypatch):
    monkeypatch.setattr(fast_cpu, 'cpu_flags',
                        lambda: frozenset({'avx512_bf16'}))
    with pytest.raises(UnknownKernelError) as err:
        prepare_for_inference(plain,
                              precision='bf16',
                              kernels={'conv3x3': 'winograd_onednn'})
    assert str(err.value) == (
        "kernel conv3x3='winograd_onednn' is not accurate enough in "
        'torch.bfloat16; the candidates in torch.bfloat16 are conv3x3: '
        'direct|direct_packed, pointwise: mkl|onednn|onednn_linear')


def test_init_model_precision_needs_the_fast_path(config, checkpoint):
    with pytest.raises(ValueError,
                       match="precision='bf16' is a mode of the fast path; "
                       'it cannot be combined with fast=False'):
        init_model(config, checkpoint, fast=False, precision='bf16')


def test_tools_test_precision_needs_fast(config, checkpoint, run_script):
    run = run_script('tools/test.py', config, checkpoint, '--precision',
                     'bf16')
    assert run.returncode == 2
    assert ('error: --precision bf16 is a mode of the fast path: add --fast'
            in run.stderr)


def test_bad_precision_is_named(plain):
    with pytest.raises(ValueError,
                       match="precision must be 'fp32' or 'bf16', got "
                       "'fp16'"):
        prepare_for_inference(plain, precision='fp16')


# ------------------------------------------------------- weights and GPU


def test_in_place_edit_after_preparing_is_refused(plain):
    prepared = prepare_for_inference(copy.deepcopy(plain))
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        prepared.inference(images, metas_for(64, 64))
        prepared.decode_head.fpn_bottleneck.norm.running_mean.add_(1)
        with pytest.raises(RuntimeError) as err:
            prepared.inference(images, metas_for(64, 64))
    assert str(err.value) == EDITED_WEIGHTS_ERROR.format(
        name='decode_head.fpn_bottleneck.bn.running_mean')


def test_loading_into_the_plain_model_after_preparing_is_caught(plain):
    state = {k: v + 1 if v.is_floating_point() else v
             for k, v in plain.state_dict().items()}
    prepared = prepare_for_inference(plain)
    plain.load_state_dict(state)
    with pytest.raises(RuntimeError) as err:
        with torch.no_grad():
            prepared.inference(torch.randn(1, 3, 64, 64), metas_for(64, 64))
    first = next(iter(dict(plain.named_parameters())))
    assert str(err.value) == EDITED_WEIGHTS_ERROR.format(name=first)


class FakeCuda:
    """Stands in for torch.cuda on a machine without a GPU: which device
    is current, and what each device can do."""

    def __init__(self, capabilities):
        self.capabilities = capabilities
        self.current = 0
        self.asked = []

    def device(self, index):
        fake = self

        class Current:

            def __enter__(self):
                self.previous, fake.current = fake.current, index

            def __exit__(self, *exc):
                fake.current = self.previous

        return Current()

    def is_bf16_supported(self, including_emulation=True):
        self.asked.append((self.current, including_emulation))
        return including_emulation or self.capabilities[self.current] >= (8,
                                                                         0)

    def get_device_capability(self, index):
        return self.capabilities[index]


def test_gpu_bf16_asks_the_models_device_for_native_support(monkeypatch):
    fake = FakeCuda({0: (8, 0), 1: (7, 0)})
    for name in ('device', 'is_bf16_supported', 'get_device_capability'):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: fake.current)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    # current device 0 is an A100, the model is on a V100 (emulated bf16)
    assert not fast_cpu.cuda_has_native_bf16(torch.device('cuda', 1))
    assert fast_gpu.default_gpu_amp(torch.device('cuda', 1)) == 'fp16'
    assert fast_cpu.cuda_has_native_bf16(torch.device('cuda', 0))
    assert fake.asked[0] == (1, False)
    assert fake.current == 0
    # a torch whose check has no including_emulation: compute capability
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: True)
    assert not fast_cpu.cuda_has_native_bf16(torch.device('cuda', 1))
    assert fast_cpu.cuda_has_native_bf16(torch.device('cuda', 0))


def test_slide_mode_agrees(plain):
    plain.test_cfg.mode = 'slide'
    plain.test_cfg.crop_size = (64, 64)
    plain.test_cfg.stride = (40, 40)
    prepared = prepare_for_inference(copy.deepcopy(plain))
    images = torch.randn(1,
                         3,
                         90,
                         131,
                         generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = plain.inference(images, metas_for(90, 131))
        result = prepared.inference(images, metas_for(90, 131))
    assert_agree(reference, result)


def test_default_rule_runs_winograd_on_large_maps(plain):
    prepared = prepare_for_inference(copy.deepcopy(plain))
    conv = prepared.fast_head.fpn_convs[0].conv
    assert conv.kernel_for(torch.empty(1, 16, 16, 64)) == 'winograd_mkl'
    assert conv.kernel_for(torch.empty(1, 15, 16, 64)) == 'direct'


def test_disabled_is_bit_identical(config, checkpoint):
    # the reference is built by mmseg and loaded by mmengine: no convseg.apis
    # code on its path
    from mmengine.runner import load_checkpoint
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    reference_model = MODELS.build(Config.fromfile(config).model)
    load_checkpoint(reference_model, checkpoint, map_location='cpu')
    reference_model.eval()
    off = init_model(config, checkpoint, fast=False)
    assert type(off) is EncoderDecoder
    modules = [(name, type(m)) for name, m in off.named_modules()]
    storage = {k: v.data_ptr() for k, v in off.state_dict().items()}
    same = prepare_for_inference(off, enable=False)
    assert same is off
    assert [(name, type(m)) for name, m in same.named_modules()] == modules
    assert {k: v.data_ptr() for k, v in same.state_dict().items()} == storage
    images = torch.randn(2,
                         3,
                         70,
                         54,
                         generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        reference = reference_model.inference(images, metas_for(70, 54, 2))
        assert torch.equal(same.inference(images, metas_for(70, 54, 2)),
                           reference)


def test_init_model_uses_fast_path_on_cpu_by_default(config, checkpoint,
                                                     plain):
    model = init_model(config, checkpoint)
    assert type(model) is FastEncoderDecoder
    images = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert_agree(plain.inference(images, metas_for(64, 80)),
                     model.inference(images, metas_for(64, 80)))


def test_state_dict_is_unchanged(plain):
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    prepared = prepare_for_inference(plain)
    after = prepared.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_model_in_training_mode_is_refused(plain):
    plain.train()
    with pytest.raises(RuntimeError) as err:
        prepare_for_inference(plain)
    assert str(err.value) == TRAINING_ERROR
    assert type(plain) is EncoderDecoder


def test_runner_built_model_is_refused(config, tmp_path):
    cfg = Config.fromfile(config)
    runner = Runner(model=cfg.model,
                    work_dir=str(tmp_path),
                    default_scope='mmseg')
    assert runner.model.training
    with pytest.raises(RuntimeError) as err:
        prepare_for_inference(runner.model)
    assert str(err.value) == TRAINING_ERROR
    assert type(runner.model) is EncoderDecoder


def test_prepared_model_refuses_to_train(plain):
    prepared = prepare_for_inference(plain)
    prepared.train()
    images = torch.randn(1, 3, 64, 64)
    with pytest.raises(RuntimeError) as err:
        prepared.inference(images, metas_for(64, 64))
    assert str(err.value) == PREPARED_TRAINING_ERROR
    with pytest.raises(RuntimeError) as err:
        prepared.loss(images, [])
    assert str(err.value) == PREPARED_TRAINING_ERROR


def test_loading_weights_after_preparing_is_refused(plain):
    state = copy.deepcopy(plain.state_dict())
    prepared = prepare_for_inference(plain)
    with pytest.raises(RuntimeError) as err:
        prepared.load_state_dict(state)
    assert str(err.value) == STALE_WEIGHTS_ERROR


def test_unsupported_head_is_left_unchanged(config, checkpoint, plain):
    gelu = init_model(
        config,
        checkpoint,
        fast=False,
        cfg_options={'model.decode_head.act_cfg': dict(type='GELU')})
    result = prepare_for_inference(gelu)
    assert type(result) is EncoderDecoder


def test_autocast_path_runs_in_bf16_and_returns_float32(plain):
    prepared = prepare_for_inference(copy.deepcopy(plain),
                                     amp='bf16',
                                     channels_last=True)
    assert prepared.fast_head is None
    assert prepared.fast_amp is torch.bfloat16
    seen = []
    prepared.backbone.stages[0][0].pwconv1.register_forward_hook(
        lambda module, args, out: seen.append(out.dtype))
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = plain.inference(images, metas_for(64, 64))
        result = prepared.inference(images, metas_for(64, 64))
    assert seen == [torch.bfloat16]
    # the bounds of the bf16 precision test: random weights make near-ties
    assert assert_agree(reference, result, BF16_BOUND, 0.98, 0.3) > 1e-4


def test_bad_amp_value_is_named(plain):
    with pytest.raises(ValueError,
                       match="amp must be 'bf16', 'fp16' or "
                       "'none', got 'fp8'"):
        prepare_for_inference(plain, amp='fp8')


# ------------------------------------------------------------------ pieces


def test_toom_cook_matrices_compute_correlation():
    rng = np.random.default_rng(0)
    for m, points in ((2, (0, 1, -1)), (4, (0, 1, -1, 2, -2)),
                      (6, (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)))):
        a_t, g, b_t = (t.numpy() for t in fast_winograd.toom_cook_matrices(m, points))
        d = rng.standard_normal(m + 2)
        w = rng.standard_normal(3)
        expected = np.correlate(d, w, mode='valid')
        np.testing.assert_allclose(a_t @ ((g @ w) * (b_t @ d)),
                                   expected,
                                   rtol=1e-10,
                                   atol=1e-10)


@pytest.mark.parametrize('shape', [(1, 16, 16), (2, 13, 22), (1, 5, 3)])
def test_winograd_matches_conv2d(shape):
    batch, height, width = shape
    gen = torch.Generator().manual_seed(height)
    x = torch.randn(batch, 24, height, width, generator=gen)
    weight = torch.randn(40, 24, 3, 3, generator=gen) * 0.1
    bias = torch.randn(40, generator=gen)
    expected = F.conv2d(x, weight, bias, padding=1)
    # a channels-last input, as the backbone hands over, and a contiguous one
    for source in (x.contiguous(memory_format=torch.channels_last), x):
        result = fast_winograd.winograd_conv3x3(to_nhwc(source),
                                       fast_winograd.winograd_filters(weight), bias)
        torch.testing.assert_close(to_nchw(result),
                                   expected,
                                   rtol=1e-4,
                                   atol=1e-4)


def test_folded_conv_matches_conv_module():
    gen = torch.Generator().manual_seed(0)
    for kernel in (1, 3):
        module = ConvModule(12,
                            20,
                            kernel,
                            padding=kernel // 2,
                            norm_cfg=dict(type='BN')).eval()
        module.norm.running_mean.copy_(torch.randn(20, generator=gen))
        module.norm.running_var.copy_(torch.rand(20, generator=gen) + 0.2)
        module.norm.weight.data.copy_(torch.randn(20, generator=gen))
        x = torch.randn(2, 12, 9, 11, generator=gen)
        with torch.no_grad():
            expected = module(x)
            for op, name in KERNEL_CHOICES:
                chooser = KernelChooser(measure=False, force={op: name})
                result = to_nchw(FoldedConv(module, chooser)(to_nhwc(x)))
                torch.testing.assert_close(result,
                                           expected,
                                           rtol=1e-4,
                                           atol=1e-4)


@pytest.mark.parametrize('kernel,layer_type,tol',
                         [(3, ConcatResizeConv, 1e-4),
                          (1, ConcatResizePointwise, 1e-5)])
@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('op,name', KERNEL_CHOICES)
def test_concat_resize_fusion_matches_conv_of_concatenation(
        kernel, layer_type, tol, align_corners, op, name):
    gen = torch.Generator().manual_seed(1)
    channels = [16, 8, 8, 4]
    module = ConvModule(sum(channels),
                        10,
                        kernel,
                        padding=kernel // 2,
                        norm_cfg=dict(type='BN')).eval()
    module.norm.running_mean.copy_(torch.randn(10, generator=gen))
    module.norm.running_var.copy_(torch.rand(10, generator=gen) + 0.2)
    size = (19, 26)
    # two parts smaller (the first of them), one at the output size, one
    # larger (downsized)
    shapes = [(10, 13), size, (3, 4), (30, 40)]
    parts = [
        torch.randn(2, c, *s, generator=gen) for c, s in zip(channels, shapes)
    ]
    with torch.no_grad():
        expected = module(
            torch.cat([
                F.interpolate(
                    p, size=size, mode='bilinear', align_corners=align_corners)
                for p in parts
            ], 1))
        layer = layer_type(module, channels, align_corners,
                           KernelChooser(measure=False, force={op: name}))
        result = to_nchw(layer([to_nhwc(p) for p in parts], size))
    torch.testing.assert_close(result, expected, rtol=tol, atol=tol)


def test_pointwise_fuse_head_runs_fast_and_agrees(config, checkpoint):
    # the quickstart's head: UPerHead with a 1x1 fusion of the FPN levels
    # (the checkpoint's 3x3 fusion weight is not loaded: random 1x1 weight)
    options = {'model.decode_head.type': 'PointwiseFuseUPerHead'}
    plain = init_model(config, None, fast=False, cfg_options=options)
    torch.manual_seed(0)
    calibrate_batchnorm(plain, seed=4)
    prepared = prepare_for_inference(copy.deepcopy(plain))
    assert type(prepared) is FastEncoderDecoder
    assert type(prepared.fast_head.fpn_bottleneck) is ConcatResizePointwise
    assert prepared.fast_backbone is not None
    images = torch.randn(1, 3, 61, 83,
                         generator=torch.Generator().manual_seed(5)) * 1.5
    with torch.no_grad():
        reference = plain.inference(images, metas_for(61, 83))
        result = prepared.inference(images, metas_for(61, 83))
    assert_agree(reference, result)


def test_resize_matrix_matches_interpolate():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 7, generator=gen)
    for align_corners in (False, True):
        mat = resize_matrix(7, 17, align_corners, torch.float32,
                                 torch.device('cpu'))
        expected = F.interpolate(x[:, None, None, :],
                                 size=(1, 17),
                                 mode='bilinear',
                                 align_corners=align_corners)[:, 0, 0]
        torch.testing.assert_close(x @ mat.t(), expected)


# ------------------------------------------------------------ tools/test.py

# the shared tiny model with the parts of configs/upernet_convnext_t_ade20k.py
# (ADE20K, runtime, 160k schedule, 512x512 crops), heads of 64 channels and
# BatchNorm, slide inference
TOOL_CONFIG = """
_base_ = [{tiny!r}, {ade!r}, {runtime!r}, {schedule!r}, {optimizer!r}]
crop_size = (512, 512)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(channels=64, norm_cfg=norm_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(40, 40)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 80), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')]
test_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root={data_root!r}, pipeline=test_pipeline))
"""


def test_tools_test_plain_by_default_and_fast_switch(
        tmp_path, repo_root, tiny_config, dataset, run_script,
        record_property):
    from PIL import Image

    data_root = dataset('ade20k',
                        num_train=1,
                        num_val=2,
                        size=(60, 90),
                        seed=3)
    base = repo_root / 'configs' / '_base_'
    config = tmp_path / 'tiny_ade.py'
    config.write_text(TOOL_CONFIG.format(
        tiny=str(tiny_config), ade=str(base / 'datasets' / 'ade20k.py'),
        runtime=str(base / 'default_runtime.py'),
        schedule=str(base / 'schedules' / 'schedule_160k.py'),
        optimizer=str(base / 'optimizers' / 'adamw_layer_decay.py'),
        data_root=data_root))
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    calibrate_batchnorm(model, seed=4)
    save_checkpoint(dict(state_dict=model.state_dict(), meta={}),
                    str(tmp_path / 'tiny.pth'))
    variants = {'fast': ['--fast'], 'plain': []}
    if fast_cpu.cpu_has_native_bf16():
        variants['bf16'] = ['--fast', '--precision', 'bf16']
    predictions = {}
    for name, flags in variants.items():
        work_dir = tmp_path / name
        run = run_script('tools/test.py', config, tmp_path / 'tiny.pth',
                         '--work-dir', work_dir, '--out', work_dir / 'png',
                         *flags, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert ('fast inference: UPerHead' in run.stdout) == (name != 'plain')
        assert ('bf16 backbone autocast' in run.stdout) == (name == 'bf16')
        predictions[name] = {
            path.name: np.asarray(Image.open(path))
            for path in sorted((work_dir / 'png').iterdir())
        }
    # tests/conftest.py fails the session if bf16 dropped out where it runs
    record_property('variants', ' '.join(predictions))
    plain_png = predictions.pop('plain')
    assert list(plain_png) == ['ADE_val_00000001.png', 'ADE_val_00000002.png']
    for name, pngs in predictions.items():
        assert list(pngs) == list(plain_png)
        for image, plain_labels in plain_png.items():
            assert pngs[image].shape == plain_labels.shape == (60, 90)
            # bf16 on random weights with 150 classes: near-ties flip
            assert (pngs[image] == plain_labels).mean() >= (
                0.999 if name == 'fast' else 0.95)


def test_model_with_a_module_in_training_mode_is_refused(plain):
    plain.decode_head.fpn_bottleneck.norm.train()
    with pytest.raises(RuntimeError) as err:
        prepare_for_inference(plain)
    assert str(err.value) == TRAINING_ERROR
