"""convseg.deploy.runtime: ONNX files run where PyTorch segmentors do
(init_model, inference_model, slide inference) and give their results."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from convseg.apis import inference_labels, inference_model, init_model
from convseg.deploy.errors import (DeployError, MissingDeployPackageError,
                                   OnnxInputError)
from convseg.deploy.runtime import OrtSegmentor


def random_images(count: int, size: tuple[int, int], seed: int
                  ) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            for _ in range(count)]


def test_slide_inference_through_onnxruntime_equals_pytorch(
        tiny, torch_model, onnx_files):
    # 100x150 images: 64x64 crops at stride 48, overlapping windows
    ort_model = init_model(tiny['config'], onnx_files['fixed_64x64_b1'])
    assert isinstance(ort_model, OrtSegmentor)
    assert ort_model.test_cfg.mode == 'slide'
    images = random_images(3, (100, 150), seed=0)
    expected = inference_model(torch_model, images, return_logits=True)
    got = inference_model(ort_model, images, return_logits=True)
    for want, have in zip(expected, got):
        scale = want.seg_logits.data.abs().max()
        diff = (have.seg_logits.data - want.seg_logits.data).abs().max()
        assert diff / scale < 1e-4
        agree = (have.pred_sem_seg.data == want.pred_sem_seg.data).float()
        assert agree.mean() >= 0.9999
    labels = inference_labels(ort_model, images)
    for want, have in zip(expected, labels):
        assert have.shape == (100, 150)
        assert (have == want.pred_sem_seg.data[0].numpy()).mean() >= 0.9999


def test_fixed_batch_graph_takes_any_number_of_images(tiny, onnx_files):
    # the 64x96 graph takes batches of exactly 2: 3 images run as 2 + 1
    whole = {'model.test_cfg.mode': 'whole'}
    ort_model = init_model(tiny['config'], onnx_files['fixed_64x96_b2'],
                           cfg_options=whole)
    torch_model = init_model(tiny['config'], tiny['checkpoint'], fast=False,
                             cfg_options=whole)
    images = random_images(3, (64, 96), seed=1)
    expected = inference_labels(torch_model, images, batch_size=3)
    got = inference_labels(ort_model, images, batch_size=3)
    for want, have in zip(expected, got):
        assert (have == want).mean() >= 0.9999


def test_fixed_graph_refuses_another_size(tiny, onnx_files):
    path = onnx_files['fixed_64x64_b1']
    ort_model = init_model(tiny['config'], path,
                           cfg_options={'model.test_cfg.mode': 'whole'})
    with pytest.raises(OnnxInputError) as err:
        inference_labels(ort_model, random_images(1, (64, 96), seed=2))
    assert str(err.value) == (
        f'{path} was exported for 64x64 images and this input is 64x96: '
        'export with --dynamic, or use slide inference with crop_size '
        '(64, 64), or resize to 64x64 in the test pipeline')


def test_dynamic_graph_runs_whole_images_of_any_size(tiny, onnx_files):
    whole = {'model.test_cfg.mode': 'whole'}
    ort_model = init_model(tiny['config'], onnx_files['dynamic'],
                           cfg_options=whole)
    torch_model = init_model(tiny['config'], tiny['checkpoint'], fast=False,
                             cfg_options=whole)
    images = random_images(2, (77, 130), seed=3)
    for want, have in zip(inference_labels(torch_model, images),
                          inference_labels(ort_model, images)):
        assert (have == want).mean() >= 0.9999


def test_backend_must_fit_the_file(tiny, onnx_files):
    with pytest.raises(DeployError) as err:
        init_model(tiny['config'], tiny['checkpoint'], backend='onnxruntime')
    assert str(err.value) == (
        'backend onnxruntime needs an .onnx file (write one with '
        f'tools/export_onnx.py), got {tiny["checkpoint"]}')
    with pytest.raises(DeployError) as err:
        init_model(tiny['config'], onnx_files['dynamic'], backend='pytorch')
    assert str(err.value) == (
        'backend pytorch needs a PyTorch checkpoint, got '
        f'{onnx_files["dynamic"]}')
    model = init_model(tiny['config'], onnx_files['dynamic'],
                       backend='onnxruntime')
    assert isinstance(model, OrtSegmentor)


def test_missing_onnxruntime_names_the_extra(tiny, onnx_files, monkeypatch):
    # an entry of None in sys.modules makes the import fail as if absent
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(MissingDeployPackageError) as err:
        init_model(tiny['config'], onnx_files['dynamic'])
    assert str(err.value).startswith('onnxruntime is not installed (')
    assert str(err.value).endswith(
        '); ONNX export and the onnxruntime backend need the deploy extra: '
        'pip install -e ".[deploy]"')


def test_onnx_model_does_not_train(tiny, onnx_files):
    model = init_model(tiny['config'], onnx_files['dynamic'])
    with pytest.raises(RuntimeError, match='is an ONNX graph for inference'):
        model.loss(torch.zeros(1, 3, 64, 64), [])
