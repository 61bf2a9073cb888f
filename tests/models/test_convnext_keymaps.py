"""The key maps: published checkpoint layouts of every family are recognised
and land in convseg's ConvNeXt; HuggingFace checkpoints come from
transformers' own models; unknown or forced families are named."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convseg  # noqa: F401
from convseg.errors import CheckpointFormatError
from convseg.models.checkpoint_loading import load_backbone_weights
from convseg.models.convnext_keymaps import convert_state_dict, detect_family
from .published_layouts import (CLASSIFIER_KEYS, DEPTHS, DIMS, LAYOUTS,
                                assert_landed, facebook_pairs,
                                published_state_dict, small_backbone, wrap)


@pytest.mark.parametrize('family', ['facebook', 'openmmlab', 'timm'])
@pytest.mark.parametrize('v2', [False, True], ids=['v1', 'v2'])
def test_published_layout_lands_in_the_right_tensors(tmp_path, family, v2):
    bb = small_backbone(use_grn=v2)
    pairs = LAYOUTS[family](bb, v2)
    classifier = CLASSIFIER_KEYS[family](DIMS[-1], v2)
    state = published_state_dict(pairs, classifier)
    path = tmp_path / f'{family}.pth'
    torch.save(wrap(family, state), path)

    assert detect_family(state) == family
    summary = load_backbone_weights(bb, str(path))

    assert_landed(pairs, state, bb)
    assert summary['family'] == family
    assert summary['loaded'] == len(pairs)
    assert sorted(summary['dropped']) == sorted(classifier)
    assert summary['unexpected'] == []
    kept_norms = {'openmmlab': ['norm3']}.get(family, [])
    assert summary['missing'] == [
        f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')
        if f'norm{i}' not in kept_norms]


def _random_hf(model: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


HF_SIZES = dict(depths=list(DEPTHS), hidden_sizes=list(DIMS))
STAGES = ['stage1', 'stage2', 'stage3', 'stage4']


@pytest.mark.parametrize('v2', [False, True], ids=['v1', 'v2'])
@pytest.mark.parametrize('fmt', ['safetensors', 'bin'])
def test_hf_backbone_features_equal_transformers(tmp_path, v2, fmt):
    import transformers as tf

    config_cls, model_cls = ((tf.ConvNextV2Config, tf.ConvNextV2Backbone)
                             if v2 else
                             (tf.ConvNextConfig, tf.ConvNextBackbone))
    hf = _random_hf(model_cls(config_cls(out_features=STAGES, **HF_SIZES)))
    if fmt == 'safetensors':
        hf.save_pretrained(tmp_path)
        checkpoint = str(tmp_path)
    else:
        # transformers >= 5 writes only safetensors; .bin is the torch.save
        # of the state dict that earlier versions wrote.
        checkpoint = str(tmp_path / 'pytorch_model.bin')
        torch.save(hf.state_dict(), checkpoint)

    bb = small_backbone(use_grn=v2, layer_scale_init_value=0 if v2 else 1e-6,
                        init_cfg=dict(type='Pretrained',
                                      checkpoint=checkpoint)).eval()
    bb.init_weights()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = bb(x)
        theirs = hf(x).feature_maps
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('v2', [False, True], ids=['v1', 'v2'])
def test_hf_classifier_hidden_states_equal_transformers(tmp_path, v2):
    import transformers as tf

    config_cls, model_cls = (
        (tf.ConvNextV2Config, tf.ConvNextV2ForImageClassification) if v2 else
        (tf.ConvNextConfig, tf.ConvNextForImageClassification))
    hf = _random_hf(model_cls(config_cls(num_labels=7, **HF_SIZES)))
    hf.save_pretrained(tmp_path)

    bb = small_backbone(use_grn=v2).eval()
    summary = load_backbone_weights(bb, str(tmp_path / 'model.safetensors'))
    prefix = 'convnextv2' if v2 else 'convnext'
    assert sorted(summary['dropped']) == sorted([
        'classifier.bias', 'classifier.weight', f'{prefix}.layernorm.bias',
        f'{prefix}.layernorm.weight'])
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = bb(x)
        hidden = hf(x, output_hidden_states=True).hidden_states[1:]
    for a, h in zip(ours, hidden):
        # convseg's output norms start as identity LayerNorms (eps 1e-6).
        expected = F.layer_norm(h.permute(0, 2, 3, 1), h.shape[1:2],
                                eps=1e-6).permute(0, 3, 1, 2)
        torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-5)


def test_unknown_family_lists_first_keys_and_known_families():
    state = {f'layer{i}.weight': torch.zeros(1) for i in range(10)}
    with pytest.raises(CheckpointFormatError) as err:
        detect_family(state)
    assert str(err.value) == (
        'cannot tell which ConvNeXt checkpoint family the state dict belongs '
        'to; its first keys are: layer0.weight, layer1.weight, layer2.weight, '
        'layer3.weight, layer4.weight, layer5.weight, layer6.weight, '
        'layer7.weight, ... (2 more). Known families and their keys: '
        'facebook (downsample_layers.0.0.weight, stages.0.0.dwconv.weight, '
        'head.weight); openmmlab (backbone.downsample_layers.0.0.weight, '
        'backbone.stages.0.0.depthwise_conv.weight, head.fc.weight); timm '
        '(stem.0.weight, stages.1.downsample.1.weight, '
        'stages.0.blocks.0.conv_dw.weight, head.fc.weight); hf '
        '(embeddings.patch_embeddings.weight, '
        'encoder.stages.0.layers.0.dwconv.weight, classifier.weight). If the '
        "backbone keys sit under a prefix, pass it (init_cfg=dict("
        "type='Pretrained', checkpoint=..., prefix='...')).")


def test_forced_family_that_does_not_fit():
    state = published_state_dict(facebook_pairs(small_backbone(), False), {})
    with pytest.raises(CheckpointFormatError) as err:
        convert_state_dict(state, 'timm')
    assert str(err.value).startswith(
        'the state dict is not a timm checkpoint: no key looks like '
        'stem.0.weight, stages.1.downsample.1.weight, '
        'stages.0.blocks.0.conv_dw.weight, head.fc.weight; its first keys '
        'are: downsample_layers.0.0.weight,')
