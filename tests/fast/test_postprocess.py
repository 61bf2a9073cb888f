"""Labels and results equal mmseg's test path on the model's own logits.

``inference_labels``, ``inference_model`` and the prepared model's
``test_step`` skip full-resolution passes that change no value (a single
sliding window's bookkeeping, resizing logits to the size they have, keeping
logits nobody asked for). Each result here is compared with one computed
independently: mmseg's ``EncoderDecoder.inference`` (its whole and slide
modes) on the same model, the padding cut off, the flip undone, the logits
resized with ``F.interpolate`` to the input's size and their argmax taken;
exactly for the plain model, the fast path in float32 and in bf16 (each
against its own logits), and bf16 against the plain model within the bound
of tests/fast/test_fast.py.
"""
import convseg  # noqa: F401  (first: installs the mmcv.ops shim)

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import save_checkpoint
from mmseg.models.segmentors import EncoderDecoder

from convseg import hardware
from convseg.apis import inference_labels, inference_model, init_model
from convseg.apis.inference import build_test_pipeline
from convseg.fast import FastEncoderDecoder
from convseg.fast.postprocess import slide_grid, upsampled_argmax

TINY = """
_base_ = [{base!r}]
model = dict(decode_head=dict(num_classes=12),
             auxiliary_head=dict(num_classes=12))
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
"""

#: name -> (image H, W, cfg_options); every case differs from the plain
#: whole-image run in what the results must undo or skip
CASES = {
    'whole': ((64, 96), {'model.test_cfg': dict(mode='whole')}),
    'whole, padded': ((50, 70), {
        'model.test_cfg': dict(mode='whole'),
        'model.data_preprocessor.test_cfg': dict(size=(64, 96))}),
    'whole, resized by the pipeline': ((45, 70), {
        'model.test_cfg': dict(mode='whole'),
        'test_pipeline': [dict(type='LoadImageFromFile'),
                          dict(type='Resize', scale=(96, 64),
                               keep_ratio=True),
                          dict(type='PackSegInputs')]}),
    'whole, flipped horizontally': ((64, 96), {
        'model.test_cfg': dict(mode='whole'),
        'test_pipeline': [dict(type='LoadImageFromFile'),
                          dict(type='RandomFlip', prob=1.0,
                               direction='horizontal'),
                          dict(type='PackSegInputs')]}),
    'whole, flipped vertically, padded': ((50, 70), {
        'model.test_cfg': dict(mode='whole'),
        'model.data_preprocessor.test_cfg': dict(size=(64, 96)),
        'test_pipeline': [dict(type='LoadImageFromFile'),
                          dict(type='RandomFlip', prob=1.0,
                               direction='vertical'),
                          dict(type='PackSegInputs')]}),
    'slide, 2 x 3 windows': ((100, 140), {
        'model.test_cfg': dict(mode='slide', crop_size=(64, 64),
                               stride=(48, 48))}),
    'slide, one window the size of the image': ((64, 96), {
        'model.test_cfg': dict(mode='slide', crop_size=(64, 96),
                               stride=(48, 64))}),
    'slide, one window larger than the image': ((50, 70), {
        'model.test_cfg': dict(mode='slide', crop_size=(128, 128),
                               stride=(96, 96))}),
    'slide, one window, flipped, resized': ((45, 70), {
        'model.test_cfg': dict(mode='slide', crop_size=(128, 128),
                               stride=(96, 96)),
        'test_pipeline': [dict(type='LoadImageFromFile'),
                          dict(type='Resize', scale=(96, 64),
                               keep_ratio=True),
                          dict(type='RandomFlip', prob=1.0,
                               direction='horizontal'),
                          dict(type='PackSegInputs')]}),
}
PRECISIONS = ['plain', 'fp32', pytest.param(
    'bf16', marks=pytest.mark.skipif(not hardware.cpu_has_native_bf16(),
                                     reason='this CPU has no native bf16'))]


@pytest.fixture(autouse=True)
def default_kernels(monkeypatch, tmp_path):
    """The default kernels: no timing, no decisions in the user's cache."""
    monkeypatch.setenv('CONVSEG_MEASURE_KERNELS', '0')
    monkeypatch.setenv('CONVSEG_KERNEL_CACHE', str(tmp_path / 'k.json'))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory, tiny_config):
    """A tiny 12-class UPerNet-ConvNeXt config and a checkpoint with random
    BatchNorm statistics and class weights (so that the labels vary over the
    image)."""
    root = tmp_path_factory.mktemp('postprocess')
    (root / 'tiny.py').write_text(TINY.format(base=str(tiny_config)))
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(root / 'tiny.py').model)
    gen = torch.Generator().manual_seed(1)
    for name, buffer in model.named_buffers():
        if name.endswith('running_mean'):
            buffer.copy_(torch.randn(buffer.shape, generator=gen) * .1)
        elif name.endswith('running_var'):
            buffer.copy_(torch.rand(buffer.shape, generator=gen) + .5)
    with torch.no_grad():
        model.decode_head.conv_seg.weight.normal_(0, 1, generator=gen)
    save_checkpoint(dict(state_dict=model.state_dict(), meta={}),
                    str(root / 'tiny.pth'))
    return str(root / 'tiny.py'), str(root / 'tiny.pth')


def build(tiny, options, precision):
    config, checkpoint = tiny
    if precision == 'plain':
        return init_model(config, checkpoint, cfg_options=options,
                          fast=False)
    return init_model(config, checkpoint, cfg_options=options,
                      precision=precision)


def image_of(height, width, seed=0):
    gen = np.random.default_rng(seed)
    coarse = gen.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3))
    smooth = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
    noise = gen.integers(-20, 21, (height, width, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def mmseg_logits(model, image):
    """mmseg's path, independently: pipeline, preprocessor, mmseg's own
    ``EncoderDecoder.inference`` (whole or slide, over the model's
    ``encode_decode``), padding cut, flip undone, ``F.interpolate`` to the
    input's size. (C, H, W) logits and their argmax."""
    packed = build_test_pipeline(model.cfg)(dict(img=image))
    data = model.data_preprocessor(
        dict(inputs=[packed['inputs']],
             data_samples=[packed['data_samples']]), False)
    meta = data['data_samples'][0].metainfo
    padding = meta.get('img_padding_size',
                       meta.get('padding_size', [0, 0, 0, 0]))
    assert (padding != [0, 0, 0, 0]) == bool(model.data_preprocessor.test_cfg)
    with torch.no_grad():
        logits = EncoderDecoder.inference(model, data['inputs'], [meta])[0]
    left, right, top, bottom = padding
    logits = logits[:, top:logits.shape[1] - bottom,
                    left:logits.shape[2] - right]
    if meta.get('flip'):
        logits = logits.flip(
            2 if meta['flip_direction'] == 'horizontal' else 1)
    logits = F.interpolate(logits[None], size=image.shape[:2],
                           mode='bilinear',
                           align_corners=model.align_corners)[0]
    return logits, logits.argmax(0)


@pytest.mark.parametrize('precision', PRECISIONS)
@pytest.mark.parametrize('case', list(CASES))
def test_labels_equal_mmseg_inference_resized_and_argmaxed(
        tiny, case, precision):
    (height, width), options = CASES[case]
    model = build(tiny, options, precision)
    assert isinstance(model, FastEncoderDecoder) == (precision != 'plain')
    image = image_of(height, width)
    logits, expected = mmseg_logits(model, image)
    assert expected.shape == (height, width)
    assert len(expected.unique()) > 3
    np.testing.assert_array_equal(inference_labels(model, image),
                                  expected.numpy())
    lean = inference_model(model, image)
    assert 'seg_logits' not in lean
    assert lean.pred_sem_seg.data.dtype == torch.int64
    torch.testing.assert_close(lean.pred_sem_seg.data[0], expected,
                               rtol=0, atol=0)
    full = inference_model(model, image, return_logits=True)
    torch.testing.assert_close(full.pred_sem_seg.data[0], expected,
                               rtol=0, atol=0)
    torch.testing.assert_close(full.seg_logits.data, logits, rtol=0,
                               atol=0)
    # the prepared model's own test path (tools/test.py --fast) too
    packed = build_test_pipeline(model.cfg)(dict(img=image))
    with torch.no_grad():
        [sample] = model.test_step(
            dict(inputs=[packed['inputs']],
                 data_samples=[packed['data_samples']]))
    torch.testing.assert_close(sample.pred_sem_seg.data[0], expected,
                               rtol=0, atol=0)
    torch.testing.assert_close(sample.seg_logits.data, logits, rtol=0,
                               atol=0)


@pytest.mark.skipif(not hardware.cpu_has_native_bf16(),
                    reason='this CPU has no native bf16')
@pytest.mark.parametrize('case', ['whole, padded',
                                  'slide, one window, flipped, resized'])
def test_bf16_labels_agree_with_the_plain_model(tiny, case):
    (height, width), options = CASES[case]
    image = image_of(height, width, seed=3)
    _, expected = mmseg_logits(build(tiny, options, 'plain'), image)
    labels = inference_labels(build(tiny, options, 'bf16'), image)
    # the argmax bound of tests/fast/test_fast.py for bf16 on random weights
    assert (labels == expected.numpy()).mean() >= 0.98


def test_slide_grid_counts_windows_as_mmseg():
    cfg = Config(dict(crop_size=(64, 64), stride=(48, 48)))
    assert slide_grid(cfg, 100, 140) == (2, 3)
    assert slide_grid(cfg, 64, 64) == (1, 1)
    assert slide_grid(cfg, 65, 30) == (2, 1)
    assert slide_grid(cfg, 10, 10) == (1, 1)


# ---------------------------------------------------------------------------
# upsampled_argmax: the argmax of a bilinear resize, read off the head's
# resolution where the four neighbours agree
# ---------------------------------------------------------------------------

def resized_argmax(logits, size, align_corners):
    """The reference: the full resize, then the argmax."""
    return F.interpolate(logits[None], size=size, mode='bilinear',
                         align_corners=align_corners).argmax(1)[0]


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('classes, low, size', [
    (7, (16, 16), (64, 64)),     # x4, as the UPerHead's output
    (5, (13, 17), (50, 71)),     # ratios that are not integers
    (9, (20, 20), (20, 20)),     # the same size
    (4, (30, 40), (11, 13)),     # smaller
    (3, (1, 5), (4, 9)),         # one input row
    (6, (8, 8), (1, 1)),         # one output pixel
    (150, (32, 32), (128, 128)),
])
def test_upsampled_argmax_equals_the_resized_argmax(classes, low, size,
                                                    align_corners):
    # random logits: nearly every output pixel has disagreeing neighbours,
    # so this checks the interpolated pixels and their corners (most_mixed=1:
    # interpolated however many they are), then the whole resize that runs
    # instead where most pixels disagree
    logits = torch.randn(classes, *low,
                         generator=torch.Generator().manual_seed(0))
    expected = resized_argmax(logits, size, align_corners)
    for most_mixed in (1.0, 0.4):
        got = upsampled_argmax(logits, size, align_corners,
                               most_mixed=most_mixed)
        assert got.dtype == torch.int64 and got.shape == size
        assert torch.equal(got, expected)


@pytest.mark.parametrize('channels_last', [False, True])
def test_upsampled_argmax_of_regions_reads_most_labels_off_the_low_map(
        channels_last):
    # 150 classes in 12x12 regions at 128x128 (as a trained head predicts):
    # about 16% of the 512x512 pixels lie where the neighbours disagree
    gen = torch.Generator().manual_seed(1)
    regions = torch.randint(0, 150, (1, 1, 12, 12), generator=gen).float()
    low = F.interpolate(regions, size=(128, 128), mode='nearest')[0, 0]
    logits = (F.one_hot(low.long(), 150).permute(2, 0, 1).float() * 3 +
              0.3 * torch.randn(150, 128, 128, generator=gen))
    if channels_last:
        logits = logits[None].contiguous(
            memory_format=torch.channels_last)[0]
    expected = resized_argmax(logits, (512, 512), False)
    assert len(expected.unique()) > 50
    assert torch.equal(upsampled_argmax(logits, (512, 512), False, chunk=999),
                       expected)
