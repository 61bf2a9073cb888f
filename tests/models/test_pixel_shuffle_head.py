"""PixelShuffleUPerHead: UPerHead's fused map, shuffled to a finer stride
and classified there, inside a real EncoderDecoder."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

import convseg  # noqa: F401
from convseg.models import PixelShuffleUPerHead
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

CONFIG = 'configs/quickstart_convnext_atto_scenes.py'  # from the repo root


def head(**kwargs) -> PixelShuffleUPerHead:
    torch.manual_seed(0)
    return PixelShuffleUPerHead(
        in_channels=[8, 16], in_index=[0, 1], channels=12, num_classes=5,
        pool_scales=(1, 2),
        **kwargs).eval()


def test_scores_are_the_fused_map_shuffled_and_classified() -> None:
    module = head(upsample=4, shuffle_channels=3)
    inputs = [torch.randn(2, 8, 6, 6), torch.randn(2, 16, 3, 3)]
    with torch.no_grad():
        scores = module(inputs)
        expanded = module.expand(module._forward_feature(inputs))
    assert scores.shape == (2, 5, 24, 24)
    # the shuffle written out: channel c * 16 + a * 4 + b of cell (i, j)
    # is pixel (4 i + a, 4 j + b) of channel c
    shuffled = expanded.reshape(2, 3, 4, 4, 6, 6).permute(
        0, 1, 4, 2, 5, 3).reshape(2, 3, 24, 24)
    assert torch.equal(shuffled[:, 1, 4 * 2 + 3, 4 * 5 + 1],
                       expanded[:, 1 * 16 + 3 * 4 + 1, 2, 5])
    expected = F.conv2d(shuffled, module.conv_seg.weight,
                        module.conv_seg.bias, padding=1)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kwargs, message', [
    (dict(upsample=0),
     'PixelShuffleUPerHead: upsample and shuffle_channels must be >= 1, got '
     'upsample=0, shuffle_channels=16'),
    (dict(shuffle_channels=0),
     'PixelShuffleUPerHead: upsample and shuffle_channels must be >= 1, got '
     'upsample=4, shuffle_channels=0'),
])
def test_bad_sizes_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        head(**kwargs)
    assert str(err.value) == message


def test_segmentor_trains_and_predicts_at_full_resolution(repo_root) -> None:
    cfg = Config.fromfile(str(repo_root / CONFIG))
    cfg.model.decode_head.type = 'PixelShuffleUPerHead'
    # the shuffle takes the finest level (the stem's stride) to stride 1
    cfg.model.decode_head.upsample = cfg.model.backbone.get('stem_stride', 4)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    gen = torch.Generator().manual_seed(0)
    sample = SegDataSample(metainfo=dict(img_shape=(64, 64),
                                         ori_shape=(64, 64),
                                         pad_shape=(64, 64)))
    sample.gt_sem_seg = PixelData(
        data=torch.randint(0, 6, (1, 64, 64), generator=gen))
    data = model.data_preprocessor(dict(
        inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8,
                              generator=gen)] * 2,
        data_samples=[sample, sample]), True)
    model.train()
    features = model.extract_feat(data['inputs'])
    assert model.decode_head(features).shape == (2, 6, 64, 64)
    losses = model(**data, mode='loss')
    # random scores over 6 classes: cross-entropy near ln 6 = 1.79
    assert losses['decode.loss_ce'].item() == pytest.approx(1.79, abs=0.5)
    model.eval()
    with torch.no_grad():
        (result, _) = model(**data, mode='predict')
    assert result.pred_sem_seg.data.shape == (1, 64, 64)
