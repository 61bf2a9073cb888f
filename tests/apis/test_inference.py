"""init_model, inference_model and inference_labels on a tiny UPerNet-ConvNeXt.

The API runs the fast-prepared model (its default on CPU). Results are
compared with mmseg's own test path (its file loader, test_step,
slide_inference, its ``inference_model``) run on the plain model, and with
inputs prepared independently with numpy/cv2/PIL.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from mmengine.runner import save_checkpoint
from PIL import Image

import convseg  # noqa: F401
from convseg.apis import (inference, inference_labels, inference_model,
                          init_model, load_image)
from convseg.imageio import ImageReadError
from convseg.visualization import random_palette

from ..helpers import randomize_bn_stats

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = f"""
_base_ = [{str(ROOT / 'configs/_base_/models/upernet_convnext.py')!r}{{extra}}]
model = dict(
    backbone=dict(arch=None, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64),
                  drop_path_rate=0.0),
    decode_head=dict(in_channels=[8, 16, 32, 64], channels=16),
    auxiliary_head=dict(in_channels=32, channels=8),
    test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(48, 48)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')]
"""
WITH_ADE20K = TINY_MODEL.format(
    extra=f", {str(ROOT / 'configs/_base_/datasets/ade20k.py')!r}") + \
    'test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n'
MODEL_ONLY = TINY_MODEL.format(extra='')
NO_RESIZE = {'test_pipeline': [dict(type='LoadImageFromFile'),
                               dict(type='PackSegInputs')],
             'model.test_cfg.crop_size': (96, 96),
             'model.test_cfg.stride': (64, 64)}


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Config files and checkpoints (with and without dataset meta)."""
    root = tmp_path_factory.mktemp('tiny')
    (root / 'ade.py').write_text(WITH_ADE20K)
    (root / 'bare.py').write_text(MODEL_ONLY)
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(root / 'ade.py').model)
    randomize_bn_stats(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    meta = dict(classes=[f'thing {i}' for i in range(150)],
                palette=[[i, 255 - i, (7 * i) % 256] for i in range(150)])
    save_checkpoint(dict(state_dict=state, meta=dict(dataset_meta=meta)),
                    str(root / 'with_meta.pth'))
    save_checkpoint(dict(state_dict=state, meta=dict()),
                    str(root / 'plain.pth'))
    return dict(root=root, ade=str(root / 'ade.py'),
                bare=str(root / 'bare.py'),
                with_meta=str(root / 'with_meta.pth'),
                plain=str(root / 'plain.pth'), state=state, meta=meta)


@pytest.fixture(scope='module')
def model(files):
    """The model as the API gives it on CPU: fast-prepared."""
    return init_model(files['ade'], files['plain'])


@pytest.fixture(scope='module')
def plain(files):
    """The same weights, run as built: the reference."""
    return init_model(files['ade'], files['plain'], fast=False)


def assert_labels_match(labels, logits, margin=1e-4):
    """``labels`` equal the argmax of the reference ``logits`` (C, H, W)
    wherever its best class leads the second by more than ``margin`` (the
    fast path's logits differ from the plain model's by about 1e-6)."""
    logits = torch.as_tensor(logits)
    top2 = logits.topk(2, dim=0).values
    clear = (top2[0] - top2[1] > margin).numpy()
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(np.asarray(labels)[clear],
                                  logits.argmax(0).numpy()[clear])


def _smooth_image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 4)
    return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX)


def _mmseg_test_step(model, path, steps=None):
    """mmseg's own path: its file loader, pipeline and test_step."""
    steps = steps or [s for s in model.cfg.test_pipeline
                      if s['type'] != 'LoadAnnotations']
    packed = Compose(steps)(dict(img_path=str(path)))
    data = dict(inputs=[packed['inputs']],
                data_samples=[packed['data_samples']])
    with torch.no_grad():
        return model.test_step(data)[0]


def test_init_model_loads_weights_meta_and_reverts_syncbn(files):
    cfg = Config.fromfile(files['ade'])
    model = init_model(cfg, files['with_meta'], fast=False)
    assert not model.training
    assert model.dataset_meta == dict(
        classes=tuple(files['meta']['classes']),
        palette=[tuple(c) for c in files['meta']['palette']])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, files['state'][key], rtol=0, atol=0)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm)
                   for m in model.modules())
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
               for m in model.modules())
    assert model.cfg.model.backbone.init_cfg is None
    assert cfg.model.backbone.init_cfg['type'] == 'Pretrained'  # not changed


def test_meta_from_config_dataset_then_generated(files):
    from mmseg.datasets import ADE20KDataset
    model = init_model(files['ade'], files['plain'], fast=False)
    assert model.dataset_meta['classes'] == ADE20KDataset.METAINFO['classes']
    assert model.dataset_meta['palette'] == [
        tuple(c) for c in ADE20KDataset.METAINFO['palette']]
    model = init_model(files['bare'], files['plain'], fast=False)
    assert model.dataset_meta['classes'] == tuple(
        f'class {i}' for i in range(150))
    assert model.dataset_meta['palette'] == random_palette(150)


def test_cfg_options_are_merged(files):
    model = init_model(files['ade'], files['plain'], fast=False,
                       cfg_options={'model.test_cfg.mode': 'whole'})
    assert model.test_cfg.mode == 'whole'
    assert model.cfg.model.test_cfg.mode == 'whole'


def test_fast_path_on_cpu_by_default_with_the_same_scores(files):
    from convseg.fast import FastEncoderDecoder
    fast = init_model(files['ade'], files['plain'])
    plain = init_model(files['ade'], files['plain'], fast=False)
    assert isinstance(fast, FastEncoderDecoder)
    assert not isinstance(plain, FastEncoderDecoder)
    image = _smooth_image(60, 90, seed=11)
    _, fast_scores = inference_labels(fast, image, return_scores=True)
    _, plain_scores = inference_labels(plain, image, return_scores=True)
    np.testing.assert_allclose(fast_scores, plain_scores, atol=1e-5)


def test_checkpoint_for_other_num_classes_names_both_numbers(files):
    from convseg.errors import CheckpointMismatchError
    options = {'model.decode_head.num_classes': 19,
               'model.auxiliary_head.num_classes': 19}
    with pytest.raises(CheckpointMismatchError) as err:
        init_model(files['ade'], files['plain'], fast=False,
                   cfg_options=options)
    assert str(err.value).startswith(
        f"checkpoint {files['plain']} was trained for 150 classes "
        "(decode_head.conv_seg.weight has 150 outputs), but the model's "
        'decode_head has num_classes=19.')


def test_path_array_pil_agree_with_mmseg_test_step(model, plain, tmp_path):
    image = _smooth_image(70, 101)
    path = tmp_path / 'odd.png'
    cv2.imwrite(str(path), image)
    reference = _mmseg_test_step(plain, path)
    expected = reference.pred_sem_seg.data[0].numpy()
    assert expected.shape == (70, 101)
    assert len(np.unique(expected)) > 1
    results = [
        inference_labels(model, str(path)),
        inference_labels(model, path),
        inference_labels(model, image),
        inference_labels(model, np.ascontiguousarray(image[:, :, ::-1]),
                        channel_order='rgb'),
        inference_labels(model, Image.open(path)),
    ]
    for result in results:
        assert result.dtype == np.int64 and result.shape == (70, 101)
        assert_labels_match(result, reference.seg_logits.data)
        np.testing.assert_array_equal(result, results[0])
    np.testing.assert_array_equal(inference_labels(plain, image), expected)


def test_scores_are_softmax_of_mmseg_logits(model, plain, tmp_path):
    image = _smooth_image(40, 90, seed=1)
    path = tmp_path / 'scores.png'
    cv2.imwrite(str(path), image)
    labels, scores = inference_labels(model, path, return_scores=True)
    logits = _mmseg_test_step(plain, path).seg_logits.data
    assert scores.dtype == np.float32 and scores.shape == (150, 40, 90)
    np.testing.assert_allclose(scores, logits.softmax(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(scores.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(labels, scores.argmax(0))


def test_resizing_a_few_classes_at_a_time_gives_the_same_labels(
        plain, tmp_path, monkeypatch):
    image = _smooth_image(300, 400, seed=2)
    path = tmp_path / 'big.png'
    cv2.imwrite(str(path), image)
    expected = _mmseg_test_step(plain, path).pred_sem_seg.data[0].numpy()
    monkeypatch.setattr(inference, 'RESIZE_BUDGET', 300 * 400 * 7)
    np.testing.assert_array_equal(inference_labels(plain, path), expected)


def test_slide_on_a_large_image_equals_mmseg_slide_inference(files,
                                                             tmp_path):
    model = init_model(files['ade'], files['plain'], cfg_options=NO_RESIZE)
    plain = init_model(files['ade'], files['plain'], cfg_options=NO_RESIZE,
                       fast=False)
    assert model.test_cfg.mode == plain.test_cfg.mode == 'slide'
    image = _smooth_image(200, 260, seed=3)  # 3 x 4 overlapping windows
    path = tmp_path / 'large.png'
    cv2.imwrite(str(path), image)
    packed = Compose(NO_RESIZE['test_pipeline'])(dict(img_path=str(path)))
    data = plain.data_preprocessor(
        dict(inputs=[packed['inputs']],
             data_samples=[packed['data_samples']]), False)
    with torch.no_grad():
        logits = plain.slide_inference(
            data['inputs'], [s.metainfo for s in data['data_samples']])
    assert logits.shape == (1, 150, 200, 260)
    assert_labels_match(inference_labels(model, image), logits[0])
    result = inference_labels(plain, image)
    np.testing.assert_array_equal(result, logits[0].argmax(0).numpy())
    np.testing.assert_array_equal(
        result, _mmseg_test_step(plain, path).pred_sem_seg.data[0].numpy())


def test_list_input_batches_and_matches_single_calls(model):
    a, b, c = (_smooth_image(64, 96, seed=s) for s in (4, 5, 6))
    odd = _smooth_image(33, 47, seed=7)
    singles = [inference_labels(model, x) for x in (a, b, odd, c, a)]
    batched = inference_labels(model, [a, b, odd, c, a], batch_size=2)
    assert isinstance(batched, list) and len(batched) == 5
    for single, result in zip(singles, batched):
        np.testing.assert_array_equal(single, result)
    assert batched[2].shape == (33, 47)
    pairs = inference_labels(model, (a, odd), return_scores=True)
    assert [p[1].shape for p in pairs] == [(150, 64, 96), (150, 33, 47)]


def test_grayscale_rgba_16bit_as_users_have_them(model, tmp_path):
    rgb = _smooth_image(50, 60, seed=8)
    gray = rgb[:, :, 1]
    cv2.imwrite(str(tmp_path / 'gray.png'), gray)
    np.testing.assert_array_equal(load_image(tmp_path / 'gray.png'),
                                  np.dstack([gray] * 3))
    np.testing.assert_array_equal(
        inference_labels(model, gray),
        inference_labels(model, np.dstack([gray] * 3)))

    alpha = np.random.default_rng(0).integers(0, 256, (50, 60), np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), 'RGBA').save(tmp_path / 'a.png')
    as_rgb = np.ascontiguousarray(rgb[:, :, ::-1])  # BGR
    np.testing.assert_array_equal(load_image(tmp_path / 'a.png'),
                                  rgb[:, :, ::-1])
    expected = inference_labels(model, as_rgb)
    for rgba in (tmp_path / 'a.png', Image.open(tmp_path / 'a.png'),
                 np.dstack([rgb, alpha])):
        kwargs = dict(channel_order='rgb') if isinstance(rgba, np.ndarray) \
            else {}
        np.testing.assert_array_equal(inference_labels(model, rgba, **kwargs),
                                      expected)

    deep = (np.arange(50 * 60, dtype=np.uint32).reshape(50, 60) * 21
            ).astype(np.uint16)
    cv2.imwrite(str(tmp_path / 'deep.png'), deep)
    scaled = np.floor(deep.astype(np.float64) * 255 / 65535 + 0.5)
    scaled = np.dstack([scaled.astype(np.uint8)] * 3)
    np.testing.assert_array_equal(load_image(tmp_path / 'deep.png'), scaled)
    np.testing.assert_array_equal(
        load_image(Image.open(tmp_path / 'deep.png')), scaled)
    np.testing.assert_array_equal(
        inference_labels(model, tmp_path / 'deep.png'),
        inference_labels(model, scaled))


@pytest.mark.parametrize('orientation,turns', [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(model, tmp_path, orientation, turns):
    image = _smooth_image(40, 72, seed=9)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f'rot{orientation}.jpg'
    Image.fromarray(image[:, :, ::-1]).save(path, exif=exif.tobytes(),
                                            quality=95)
    raw = cv2.imread(str(path),
                     cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    upright = np.ascontiguousarray(np.rot90(raw, k=turns))
    np.testing.assert_array_equal(load_image(path), upright)
    result = inference_labels(model, path)
    assert result.shape == upright.shape[:2]
    np.testing.assert_array_equal(result, inference_labels(model, upright))


def test_bad_inputs_name_the_problem(model, tmp_path):
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'\xff\xd8 not really a jpeg')
    with pytest.raises(ImageReadError, match=f'cannot decode image file '
                       f'{broken}'):
        inference_labels(model, [np.zeros((8, 8, 3), np.uint8), broken])
    with pytest.raises(FileNotFoundError, match='missing.png does not exist'):
        inference_labels(model, tmp_path / 'missing.png')
    with pytest.raises(ImageReadError, match='unsupported pixel type float32'):
        inference_labels(model, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ImageReadError, match=r'got \(8, 8, 2\)'):
        inference_labels(model, np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="channel_order must be one of"):
        inference_labels(model, np.zeros((8, 8, 3), np.uint8),
                        channel_order='bgra')
    with pytest.raises(TypeError, match='got int'):
        inference_labels(model, 3)


def test_config_without_test_pipeline(files):
    model = init_model(files['bare'], files['plain'], fast=False,
                       cfg_options=dict(test_pipeline=None))
    with pytest.raises(KeyError, match='the config has no test pipeline'):
        inference_labels(model, np.zeros((8, 8, 3), np.uint8))


def test_inference_model_returns_mmseg_results(model, plain, tmp_path):
    from mmseg.apis import inference_model as mmseg_inference_model
    from mmseg.structures import SegDataSample
    image = _smooth_image(70, 101, seed=12)
    path = tmp_path / 'sample.png'
    cv2.imwrite(str(path), image)
    reference = mmseg_inference_model(plain, str(path))
    ours = inference_model(plain, path, return_logits=True)
    assert type(ours) is SegDataSample
    assert ours.pred_sem_seg.data.shape == (1, 70, 101)
    assert ours.pred_sem_seg.data.dtype == torch.int64
    assert ours.seg_logits.data.shape == (150, 70, 101)
    torch.testing.assert_close(ours.seg_logits.data,
                               reference.seg_logits.data, rtol=0, atol=0)
    torch.testing.assert_close(ours.pred_sem_seg.data,
                               reference.pred_sem_seg.data, rtol=0, atol=0)
    assert ours.ori_shape == reference.ori_shape == (70, 101)
    fast = inference_model(model, [image, image[:33, :47]], batch_size=2,
                           return_logits=True)
    assert [type(r) for r in fast] == [SegDataSample, SegDataSample]
    torch.testing.assert_close(fast[0].seg_logits.data,
                               reference.seg_logits.data, rtol=0, atol=1e-5)
    assert fast[1].pred_sem_seg.data.shape == (1, 33, 47)
    np.testing.assert_array_equal(fast[0].pred_sem_seg.data[0].numpy(),
                                  inference_labels(model, image))
    lean = inference_model(plain, path)
    assert 'seg_logits' not in lean and 'pred_sem_seg' in lean
    torch.testing.assert_close(lean.pred_sem_seg.data,
                               reference.pred_sem_seg.data, rtol=0, atol=0)
    with pytest.raises(TypeError, match="return_logits must be True or "
                       "False, got 'yes'"):
        inference_model(plain, path, return_logits='yes')


def test_mmseg_visualizer_draws_our_result(model, tmp_path):
    from mmseg.apis import show_result_pyplot
    image = _smooth_image(48, 64, seed=13)
    path = tmp_path / 'draw.png'
    cv2.imwrite(str(path), image)
    result = inference_model(model, path)
    drawn = show_result_pyplot(model, str(path), result, opacity=0.5,
                               show=False, with_labels=False,
                               out_file=str(tmp_path / 'drawn.png'))
    labels = result.pred_sem_seg.data[0].numpy()
    palette = np.array(model.dataset_meta['palette'], np.float64)
    rgb = image[:, :, ::-1].astype(np.float64)
    expected = (rgb * 0.5 + palette[labels] * 0.5).astype(np.uint8)
    assert drawn.shape == (48, 64, 3)
    assert np.abs(drawn.astype(int) - expected).max() <= 1
    assert cv2.imread(str(tmp_path / 'drawn.png')).shape == (48, 64, 3)


def test_device_none_means_cuda_when_available(files):
    model = init_model(files['ade'], files['plain'], device=None)
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert next(model.parameters()).device.type == expected


@pytest.mark.parametrize('fast', [True, False])
def test_labels_equal_the_argmax_of_encode_decode(files, fast):
    model = init_model(files['ade'], files['plain'], fast=fast,
                       cfg_options=dict(NO_RESIZE,
                                        **{'model.test_cfg.mode': 'whole'}))
    image = _smooth_image(64, 96, seed=5)
    packed = inference.build_test_pipeline(model.cfg)(dict(img=image))
    data = model.data_preprocessor(
        dict(inputs=[packed['inputs']],
             data_samples=[packed['data_samples']]), False)
    metas = [sample.metainfo for sample in data['data_samples']]
    with torch.no_grad():
        logits = model.encode_decode(data['inputs'], metas)
    expected = logits[0].argmax(0)[:64, :96].numpy()
    assert len(np.unique(expected)) > 3
    np.testing.assert_array_equal(inference_labels(model, image), expected)
    np.testing.assert_array_equal(
        inference_model(model, image).pred_sem_seg.data[0].numpy(), expected)
