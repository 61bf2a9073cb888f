"""The GPU inference path (convseg.fast.prepare_for_inference on CUDA:
bf16/fp16 autocast, channels-last, torch.compile of the backbone) against the
same trained model in fp32 on the GPU.

The model is the quickstart UPerNet trained on the scenes by the session
fixture; the comparison runs on the 20 validation scenes. The fp32 model must
first segment them well (so that agreement is not that of a constant map),
then every variant must give float32 logits whose argmax agrees with fp32 on
at least 99.5% of the pixels.
"""
from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmseg.structures import SegDataSample

from convseg.apis import init_model
from convseg.fast import prepare_for_inference

AGREEMENT = 0.995


@pytest.fixture(scope='module')
def fp32(trained_scenes):
    """The trained model in fp32 on the GPU, its inputs, logits and the
    validation labels (0 = other, class i + 1 = prediction i)."""
    config, checkpoint, root = trained_scenes
    model = init_model(config, checkpoint, device='cuda:0', fast=False)
    images = sorted(Path(root).glob('images/validation/*.jpg'))
    data = dict(inputs=[], data_samples=[])
    for path in images:
        image = cv2.imread(str(path))
        data['inputs'].append(torch.from_numpy(image).permute(2, 0, 1))
        shape = image.shape[:2]
        data['data_samples'].append(SegDataSample(metainfo=dict(
            img_shape=shape, ori_shape=shape, pad_shape=shape,
            padding_size=[0, 0, 0, 0], flip=False)))
    data = model.data_preprocessor(data, False)
    metas = [s.metainfo for s in data['data_samples']]
    with torch.no_grad():
        logits = model.inference(data['inputs'], copy.deepcopy(metas))
    labels = np.stack([
        cv2.imread(str(Path(root, 'annotations', 'validation',
                            p.stem + '.png')), cv2.IMREAD_UNCHANGED)
        for p in images])
    return model, data['inputs'], metas, logits, labels


@pytest.mark.gpu
def test_fp32_model_segments_the_scenes(fp32) -> None:
    _, _, _, logits, labels = fp32
    predicted = logits.argmax(1).cpu().numpy()
    known = labels > 0
    assert (predicted[known] == labels[known] - 1).mean() > 0.7
    assert len(np.unique(predicted)) >= 5


VARIANTS = [
    pytest.param('fp16', False, False, marks=pytest.mark.gpu, id='fp16'),
    pytest.param('fp16', True, True, marks=pytest.mark.gpu,
                 id='fp16-channels_last-compile'),
    pytest.param('bf16', False, False, marks=pytest.mark.gpu(bf16=True),
                 id='bf16'),
    pytest.param('bf16', True, False, marks=pytest.mark.gpu(bf16=True),
                 id='bf16-channels_last'),
    pytest.param('bf16', True, True, marks=pytest.mark.gpu(bf16=True),
                 id='bf16-channels_last-compile'),
]


@pytest.mark.parametrize('amp, channels_last, compile', VARIANTS)
def test_gpu_inference_agrees_with_fp32(fp32, amp: str, channels_last: bool,
                                        compile: bool) -> None:
    model, inputs, metas, reference, _ = fp32
    fast = prepare_for_inference(copy.deepcopy(model), amp=amp,
                                 channels_last=channels_last, compile=compile)
    seen = []
    fast.backbone.downsample_layers[0][0].register_forward_hook(
        lambda module, args, out: seen.append(out.dtype))
    with torch.no_grad():
        logits = fast.inference(inputs, copy.deepcopy(metas))
    assert logits.dtype == torch.float32
    assert logits.shape == reference.shape
    if not compile:  # a compiled backbone runs no Python forward hooks
        assert seen == [dict(fp16=torch.float16, bf16=torch.bfloat16)[amp]]
    agreement = (logits.argmax(1) == reference.argmax(1)).float().mean()
    assert agreement.item() >= AGREEMENT


@pytest.mark.gpu
def test_default_autocast_is_bf16_only_where_native(fp32) -> None:
    # bf16 only on GPUs that compute it natively (compute capability 8.0 or
    # newer); older GPUs emulate it slowly and get fp16
    model, inputs, metas, _, _ = fp32
    fast = prepare_for_inference(copy.deepcopy(model))
    seen = []
    fast.backbone.downsample_layers[0][0].register_forward_hook(
        lambda module, args, out: seen.append(out.dtype))
    with torch.no_grad():
        logits = fast.inference(inputs, copy.deepcopy(metas))
    native = torch.cuda.get_device_capability(0) >= (8, 0)
    assert seen == [torch.bfloat16 if native else torch.float16]
    assert logits.dtype == torch.float32
