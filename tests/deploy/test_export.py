"""convseg.deploy.export: the ONNX graph computes what mmseg's test path
computes (onnxruntime against the PyTorch model's predict), at fixed and
dynamic shapes; metadata; clear errors for models it cannot export."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.structures import SegDataSample

from convseg.apis import init_model
from convseg.deploy.errors import UnsupportedExportError
from convseg.deploy.export import BinAveragePool, export_onnx
from convseg.deploy.runtime import read_metadata


@pytest.fixture(scope='module')
def whole_model(tiny: dict) -> nn.Module:
    """The tiny model in whole-image mode, as PyTorch runs it."""
    return init_model(tiny['config'], tiny['checkpoint'], fast=False,
                      cfg_options={'model.test_cfg.mode': 'whole'})


def mmseg_predict(model: nn.Module, images: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of RGB uint8 images (N, H, W, 3) through the data
    preprocessor and mmseg's predict, given BGR as mmseg's loaders give."""
    height, width = images.shape[1:3]
    inputs = [torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)
              for image in images]
    samples = [SegDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width),
        pad_shape=(height, width), padding_size=[0, 0, 0, 0]))
        for _ in images]
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples),
                                   False)
    with torch.no_grad():
        out = model.predict(data['inputs'], data['data_samples'])
    return (torch.stack([o.seg_logits.data for o in out]).numpy(),
            torch.stack([o.pred_sem_seg.data[0] for o in out]).numpy())


@pytest.mark.parametrize('bins,size', [(3, (16, 16)), (6, (16, 16)),
                                       (6, (2, 2)), ((3, 2), (13, 9)),
                                       (1, (5, 7)), (2, (7, 11))])
def test_bin_average_pool_is_adaptive_average_pool(bins, size):
    x = torch.randn(2, 4, *size, generator=torch.Generator().manual_seed(0))
    expected = F.adaptive_avg_pool2d(x, bins)
    got = BinAveragePool(bins)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('name,batch,size', [
    ('fixed_64x64_b1', 1, (64, 64)), ('fixed_64x96_b2', 2, (64, 96)),
    ('dynamic', 1, (64, 64)), ('dynamic', 2, (96, 128)),
    ('dynamic', 3, (100, 150))])
def test_onnxruntime_matches_pytorch(onnx_files, whole_model, tiny, name,
                                     batch, size):
    rng = np.random.default_rng(batch * size[1])
    images = rng.integers(0, 256, (batch, *size, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(onnx_files[name])
    logits, labels = session.run(
        ['logits', 'labels'],
        {'image': images.transpose(0, 3, 1, 2).astype(np.float32)})
    expected_logits, expected_labels = mmseg_predict(whole_model, images)
    assert logits.shape == (batch, tiny['num_classes'], *size)
    assert labels.shape == (batch, *size) and labels.dtype == np.int64
    rel = np.abs(logits - expected_logits).max() / np.abs(
        expected_logits).max()
    assert rel < 1e-4
    assert (labels == expected_labels).mean() >= 0.9999


def test_graph_inputs_and_outputs(onnx_files, tiny):
    def dims(value):
        return [d.dim_param or d.dim_value
                for d in value.type.tensor_type.shape.dim]
    fixed = onnx.load(onnx_files['fixed_64x96_b2']).graph
    assert [i.name for i in fixed.input] == ['image']
    assert [o.name for o in fixed.output] == ['logits', 'labels']
    assert dims(fixed.input[0]) == [2, 3, 64, 96]
    assert dims(fixed.output[0]) == [2, tiny['num_classes'], 64, 96]
    dynamic = onnx.load(onnx_files['dynamic']).graph
    batch, channels, height, width = dims(dynamic.input[0])
    assert channels == 3
    assert all(isinstance(d, str) for d in (batch, height, width))
    assert len({batch, height, width}) == 3


def test_metadata_round_trips(onnx_files, tiny):
    meta = tiny['meta']
    props = {p.key: p.value
             for p in onnx.load(onnx_files['fixed_64x64_b1']).metadata_props}
    assert json.loads(props['classes']) == meta['classes']
    assert json.loads(props['palette']) == meta['palette']
    expected = dict(classes=tuple(meta['classes']),
                    palette=[tuple(c) for c in meta['palette']])
    assert read_metadata(onnx_files['dynamic']) == expected
    model = init_model(tiny['config'], onnx_files['fixed_64x64_b1'])
    assert model.dataset_meta == expected


def test_non_upernet_model_is_refused(tmp_path, tiny_config):
    config = tmp_path / 'fcn.py'
    config.write_text(
        f'_base_ = [{str(tiny_config)!r}]\n'
        'model = dict(decode_head=dict(_delete_=True, type="FCNHead", '
        'in_channels=64, in_index=3, channels=16, num_classes=5))\n')
    model = init_model(str(config), None, fast=False)
    with pytest.raises(UnsupportedExportError) as err:
        export_onnx(model, tmp_path / 'fcn.onnx', (64, 64))
    assert str(err.value) == (
        'model.decode_head is a FCNHead; ONNX export supports UPerNet '
        'segmentors (an mmseg EncoderDecoder with a UPerHead decode head): '
        'use a UPerHead config')
    assert not (tmp_path / 'fcn.onnx').exists()


class ValueBranch(nn.Module):
    """A block that branches on a tensor's value: not traceable."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        return x * 0.5 if x.abs().max().item() > 1e6 else x


def test_untraceable_module_is_named(tmp_path, tiny):
    model = init_model(tiny['config'], tiny['checkpoint'], fast=False)
    model.backbone.stages[1][0] = ValueBranch(model.backbone.stages[1][0])
    out = tmp_path / 'value_branch.onnx'
    with pytest.raises(UnsupportedExportError) as err:
        export_onnx(model, out, (64, 64))
    message = str(err.value)
    assert message.startswith('model.backbone.stages.1.0 (ValueBranch) '
                              'cannot be exported to ONNX: ')
    assert message.endswith(
        'Its forward must be traceable by torch.export: no Python branches '
        'on tensor values and no conversion of tensors to Python or numpy '
        'values (.item(), .tolist(), .numpy())')
    assert not out.exists()
