"""Checkpoint families load into convseg's ConvNeXt and UPerNet models.

The key layouts of the Facebook, OpenMMLab and timm families are written out
here as published (not produced by convseg's mapping): each published key is
paired with the convseg tensor it must land in, the checkpoint gets distinct
values per tensor, and the test checks every value arrived where it should.
HuggingFace checkpoints come from transformers' own models.
"""
from __future__ import annotations

import functools
import http.server
import os
import threading

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope

import convseg  # noqa: F401
from convseg.apis import init_model
from convseg.errors import CheckpointFormatError, CheckpointMismatchError
from convseg.models.checkpoint_loading import (dataset_meta_from,
                                               load_backbone_weights,
                                               load_segmentor_checkpoint)
from convseg.models.convnext_keymaps import convert_state_dict, detect_family
from convseg.models.convnext import ConvNeXt

DEPTHS = (2, 1, 2, 1)
DIMS = (8, 16, 32, 64)
Pair = tuple[str, torch.Tensor, tuple[int, ...]]


def small_backbone(**kwargs) -> ConvNeXt:
    kwargs.setdefault('depths', DEPTHS)
    kwargs.setdefault('dims', DIMS)
    return ConvNeXt(**kwargs)


# ---------------------------------------------------------------- layouts
# Each function pairs the key names of one published layout with the convseg
# tensor the key must load into, and the shape the family stores it in.

def facebook_pairs(bb: ConvNeXt, v2: bool) -> list[Pair]:
    """Official ConvNeXt / ConvNeXt-V2 (models/convnext.py, convnextv2.py)."""
    pairs: list[Pair] = []
    for i, layer in enumerate(bb.downsample_layers):
        for k in (0, 1):
            for p in ('weight', 'bias'):
                t = getattr(layer[k], p)
                pairs.append((f'downsample_layers.{i}.{k}.{p}', t, t.shape))
    for i, stage in enumerate(bb.stages):
        for j, blk in enumerate(stage):
            for name in ('dwconv', 'norm', 'pwconv1', 'pwconv2'):
                for p in ('weight', 'bias'):
                    t = getattr(getattr(blk, name), p)
                    pairs.append((f'stages.{i}.{j}.{name}.{p}', t, t.shape))
            if v2:
                c = blk.grn.gamma.shape[-1]
                pairs.append((f'stages.{i}.{j}.grn.gamma', blk.grn.gamma,
                              (1, 1, 1, c)))
                pairs.append((f'stages.{i}.{j}.grn.beta', blk.grn.beta,
                              (1, 1, 1, c)))
            else:
                pairs.append((f'stages.{i}.{j}.gamma', blk.gamma,
                              blk.gamma.shape))
    return pairs


def openmmlab_pairs(bb: ConvNeXt, v2: bool, norms=(3, )) -> list[Pair]:
    """mmpretrain's ConvNeXt: models/backbones/convnext.py, under backbone."""
    pairs: list[Pair] = []
    for i, layer in enumerate(bb.downsample_layers):
        for k in (0, 1):
            for p in ('weight', 'bias'):
                t = getattr(layer[k], p)
                pairs.append(
                    (f'backbone.downsample_layers.{i}.{k}.{p}', t, t.shape))
    for i, stage in enumerate(bb.stages):
        for j, blk in enumerate(stage):
            pre = f'backbone.stages.{i}.{j}'
            for mm, ours in (('depthwise_conv', blk.dwconv),
                             ('norm', blk.norm),
                             ('pointwise_conv1', blk.pwconv1),
                             ('pointwise_conv2', blk.pwconv2)):
                for p in ('weight', 'bias'):
                    t = getattr(ours, p)
                    pairs.append((f'{pre}.{mm}.{p}', t, t.shape))
            if v2:
                c = blk.grn.gamma.shape[-1]
                pairs.append((f'{pre}.grn.gamma', blk.grn.gamma, (c, )))
                pairs.append((f'{pre}.grn.beta', blk.grn.beta, (c, )))
            else:
                pairs.append((f'{pre}.gamma', blk.gamma, blk.gamma.shape))
    for i in norms:
        for p in ('weight', 'bias'):
            t = getattr(getattr(bb, f'norm{i}'), p)
            pairs.append((f'backbone.norm{i}.{p}', t, t.shape))
    return pairs


def timm_pairs(bb: ConvNeXt, v2: bool) -> list[Pair]:
    """timm's models/convnext.py (stem, stages.N.downsample, blocks)."""
    pairs: list[Pair] = []
    for k in (0, 1):
        for p in ('weight', 'bias'):
            t = getattr(bb.downsample_layers[0][k], p)
            pairs.append((f'stem.{k}.{p}', t, t.shape))
    for i in (1, 2, 3):
        for k in (0, 1):
            for p in ('weight', 'bias'):
                t = getattr(bb.downsample_layers[i][k], p)
                pairs.append((f'stages.{i}.downsample.{k}.{p}', t, t.shape))
    for i, stage in enumerate(bb.stages):
        for j, blk in enumerate(stage):
            pre = f'stages.{i}.blocks.{j}'
            for tm, ours in (('conv_dw', blk.dwconv), ('norm', blk.norm),
                             ('mlp.fc1', blk.pwconv1),
                             ('mlp.fc2', blk.pwconv2)):
                for p in ('weight', 'bias'):
                    t = getattr(ours, p)
                    pairs.append((f'{pre}.{tm}.{p}', t, t.shape))
            if v2:
                c = blk.grn.gamma.shape[-1]
                pairs.append((f'{pre}.mlp.grn.weight', blk.grn.gamma, (c, )))
                pairs.append((f'{pre}.mlp.grn.bias', blk.grn.beta, (c, )))
            else:
                pairs.append((f'{pre}.gamma', blk.gamma, blk.gamma.shape))
    return pairs


CLASSIFIER_KEYS = {
    # 1K head on V1, 22K head on V2: both are dropped alike.
    'facebook': lambda c, v2: {
        'norm.weight': (c, ), 'norm.bias': (c, ),
        'head.weight': (21841 if v2 else 1000, c),
        'head.bias': (21841 if v2 else 1000, )},
    'openmmlab': lambda c, v2: {'head.fc.weight': (1000, c),
                                'head.fc.bias': (1000, )},
    'timm': lambda c, v2: {'head.norm.weight': (c, ), 'head.norm.bias': (c, ),
                           'head.fc.weight': (1000, c),
                           'head.fc.bias': (1000, )},
}
LAYOUTS = {'facebook': facebook_pairs, 'openmmlab': openmmlab_pairs,
           'timm': timm_pairs}


def distinct(shape, index: int) -> torch.Tensor:
    """A tensor whose values differ from every other tensor's (by index).

    Values stay exact in float32 for up to 256 tensors.
    """
    numel = int(torch.Size(shape).numel())
    assert index < 256
    return (torch.arange(numel, dtype=torch.float32) % 2.0**16 +
            index * 2.0**16).reshape(shape)


def published_state_dict(pairs: list[Pair], classifier: dict[str, tuple]):
    state = {key: distinct(shape, n)
             for n, (key, _, shape) in enumerate(pairs)}
    for n, (key, shape) in enumerate(classifier.items(), start=len(pairs)):
        state[key] = torch.full(shape, -float(n))
    return state


def wrap(family: str, state: dict) -> dict:
    """The container each family's files use."""
    if family == 'facebook':
        return {'model': state}
    if family == 'openmmlab':
        return {'meta': {'mmpretrain_version': '1.2.0'}, 'state_dict': state}
    return state


def assert_landed(pairs: list[Pair], state: dict, bb: ConvNeXt) -> None:
    for key, tensor, _ in pairs:
        assert torch.equal(tensor, state[key].reshape(tensor.shape)), key
    covered = {id(t) for _, t, _ in pairs}
    left = [name for name, t in bb.named_parameters() if id(t) not in covered]
    assert all(name.startswith(('norm0.', 'norm1.', 'norm2.', 'norm3.'))
               for name in left), left


# ------------------------------------------------------ published layouts

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


def test_timm_safetensors_through_init_cfg(tmp_path):
    from safetensors.torch import save_file

    bb = small_backbone(use_grn=True)
    pairs = timm_pairs(bb, True)
    state = published_state_dict(pairs, CLASSIFIER_KEYS['timm'](64, True))
    save_file(state, str(tmp_path / 'model.safetensors'))

    bb = small_backbone(use_grn=True, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'model.safetensors')))
    bb.init_weights()
    assert_landed(timm_pairs(bb, True), state, bb)


def test_prefix_selects_keys_of_a_wrapped_checkpoint(tmp_path):
    bb = small_backbone()
    pairs = facebook_pairs(bb, False)
    state = published_state_dict(pairs, {})
    wrapped = {f'teacher.{k}': v for k, v in state.items()}
    wrapped['student.stem.weight'] = torch.zeros(1)
    torch.save({'state_dict': wrapped}, tmp_path / 'distill.pth')

    load_backbone_weights(bb, str(tmp_path / 'distill.pth'), prefix='teacher.')
    assert_landed(pairs, state, bb)

    with pytest.raises(CheckpointFormatError) as err:
        load_backbone_weights(bb, str(tmp_path / 'distill.pth'), prefix='ema.')
    assert str(err.value) == (
        f"no key of {tmp_path / 'distill.pth'} starts with prefix 'ema.'; its "
        'first keys are: teacher.downsample_layers.0.0.weight, '
        'teacher.downsample_layers.0.0.bias, '
        'teacher.downsample_layers.0.1.weight, '
        'teacher.downsample_layers.0.1.bias, '
        'teacher.downsample_layers.1.0.weight, '
        'teacher.downsample_layers.1.0.bias, '
        'teacher.downsample_layers.1.1.weight, '
        'teacher.downsample_layers.1.1.bias, ... (63 more).')


def test_unknown_keys_are_reported_not_dropped(tmp_path):
    bb = small_backbone()
    pairs = facebook_pairs(bb, False)
    state = published_state_dict(pairs, {'head.weight': (3, 64)})
    state['dist_token'] = torch.ones(3)
    summary = load_backbone_weights(bb, {'model': state})
    assert summary['unexpected'] == ['dist_token']
    assert summary['dropped'] == ['head.weight']


# ------------------------------------------------------------- HuggingFace

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


# -------------------------------------------------------------- errors

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


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    source = small_backbone(in_channels=4)
    state = published_state_dict(timm_pairs(source, False), {})
    path = tmp_path / 'rgbd.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_backbone_weights(small_backbone(), str(path))
    assert str(err.value) == (
        f'checkpoint {path}: downsample_layers.0.0.weight (checkpoint key '
        'stem.0.weight) has shape (8, 4, 4, 4) in the checkpoint but '
        '(8, 3, 4, 4) in the model. Check that the config matches the '
        'checkpoint (in_channels, num_classes, channels).')


def test_other_arch_says_which_arch_it_looks_like(tmp_path):
    source = ConvNeXt(arch='atto', use_grn=True)
    state = published_state_dict(facebook_pairs(source, True), {})
    path = tmp_path / 'convnextv2_atto_1k_224_ema.pt'
    torch.save({'model': state}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_backbone_weights(ConvNeXt(arch='femto'), str(path))
    assert str(err.value) == (
        f'checkpoint {path} looks like ConvNeXt V2-atto (depths (2, 2, 6, 2), '
        'dims (40, 80, 160, 320), GRN, no layer scale), but the model is '
        'ConvNeXt-femto (depths (2, 2, 6, 2), dims (48, 96, 192, 384), no '
        'GRN, layer scale). Build the backbone to match the checkpoint '
        "(arch='atto', use_grn=True, layer_scale_init_value=0) or use a "
        'checkpoint made for this model.')

    unnamed = published_state_dict(facebook_pairs(small_backbone(), False),
                                   {})
    with pytest.raises(CheckpointMismatchError) as err:
        load_backbone_weights(ConvNeXt(arch='atto'), unnamed)
    assert str(err.value) == (
        'checkpoint the given state dict looks like an unnamed ConvNeXt '
        '(depths (2, 1, 2, 1), dims (8, 16, 32, 64), no GRN, layer scale), '
        'but the model is ConvNeXt-atto (depths (2, 2, 6, 2), dims '
        '(40, 80, 160, 320), no GRN, layer scale). Build the backbone to '
        'match the checkpoint (depths=(2, 1, 2, 1), dims=(8, 16, 32, 64)) or '
        'use a checkpoint made for this model.')


def test_forced_family_that_does_not_fit():
    state = published_state_dict(facebook_pairs(small_backbone(), False), {})
    with pytest.raises(CheckpointFormatError) as err:
        convert_state_dict(state, 'timm')
    assert str(err.value).startswith(
        'the state dict is not a timm checkpoint: no key looks like '
        'stem.0.weight, stages.1.downsample.1.weight, '
        'stages.0.blocks.0.conv_dw.weight, head.fc.weight; its first keys '
        'are: downsample_layers.0.0.weight,')


# ---------------------------------------------------------------- URLs

@pytest.fixture
def http_dir(tmp_path):
    """Serve tmp_path/www over HTTP on localhost; yield (dir, base URL)."""
    root = tmp_path / 'www'
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args) -> None:
        pass


def test_url_is_downloaded_into_the_hub_cache(tmp_path, http_dir):
    root, base = http_dir
    bb = small_backbone()
    pairs = facebook_pairs(bb, False)
    state = published_state_dict(pairs, CLASSIFIER_KEYS['facebook'](64, False))
    torch.save({'model': state}, root / 'convnext_small_test.pth')

    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    try:
        bb = small_backbone(init_cfg=dict(
            type='Pretrained', checkpoint=f'{base}/convnext_small_test.pth'))
        bb.init_weights()
    finally:
        torch.hub.set_dir(old_hub)
    assert_landed(facebook_pairs(bb, False), state, bb)
    assert os.path.isfile(tmp_path / 'hub' / 'checkpoints' /
                          'convnext_small_test.pth')


# ------------------------------------------------- segmentation checkpoints

CLASSES = ('wall', 'floor', 'sky', 'tree', 'person')
PALETTE = [[120, 120, 120], [80, 50, 50], [6, 230, 230], [4, 200, 3],
           [150, 5, 61]]


def upernet_config(tmp_path) -> str:
    """A small UPerNet-ConvNeXt config in mmseg's layout, written to disk."""
    norm_cfg = dict(type='BN', requires_grad=True)
    model = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
            seg_pad_val=255),
        backbone=dict(type='ConvNeXt', depths=list(DEPTHS), dims=list(DIMS),
                      layer_scale_init_value=1.0),
        decode_head=dict(
            type='UPerHead', in_channels=list(DIMS), in_index=[0, 1, 2, 3],
            pool_scales=(1, 2, 3, 6), channels=16, dropout_ratio=0.1,
            num_classes=len(CLASSES), norm_cfg=norm_cfg, align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        auxiliary_head=dict(
            type='FCNHead', in_channels=DIMS[2], in_index=2, channels=8,
            num_convs=1, concat_input=False, dropout_ratio=0.1,
            num_classes=len(CLASSES), norm_cfg=norm_cfg, align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))
    cfg = Config(dict(default_scope='mmseg', model=model, test_pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='PackSegInputs')]))
    path = str(tmp_path / 'upernet_convnext_small.py')
    cfg.dump(path)
    return path


def random_source_model(config: str) -> torch.nn.Module:
    from mmseg.registry import MODELS

    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(config).model)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                values = torch.rand(t.shape, generator=gen)
                t.copy_(values + 0.5 if 'running_var' in name else
                        values * 0.4 - 0.2)
    return model.eval()


def facebook_segmentor_checkpoint(model) -> dict:
    """mmseg 0.x file as released by Facebook: official names, CLASSES."""
    return {
        'meta': {'mmcv_version': '1.3.0', 'time': 'Wed Jan 12 2022',
                 'CLASSES': CLASSES, 'PALETTE': PALETTE,
                 'config': 'norm_cfg = ...', 'iter': 160000},
        'state_dict': {k: v.clone() for k, v in model.state_dict().items()},
    }


def openmmlab_segmentor_checkpoint(model) -> dict:
    """mmseg 1.x file with mmpretrain backbone names and dataset_meta."""
    state = {k: v.clone() for k, v in model.state_dict().items()
             if not k.startswith('backbone.')}
    for key, tensor, _ in openmmlab_pairs(model.backbone, False,
                                          norms=(0, 1, 2, 3)):
        state[key] = tensor.detach().clone()
    return {'meta': {'mmseg_version': '1.2.2',
                     'dataset_meta': {'classes': CLASSES,
                                      'palette': PALETTE}},
            'state_dict': state}


def load_through_api(config: str, checkpoint: str):
    """The segmentor as convseg.apis.init_model loads it (plain path)."""
    return init_model(config, checkpoint, device='cpu', fast=False)


@pytest.mark.parametrize('fmt', ['facebook', 'openmmlab'])
def test_segmentor_checkpoint_gives_the_source_logits(tmp_path, fmt):
    config = upernet_config(tmp_path)
    source = random_source_model(config)
    build = (facebook_segmentor_checkpoint if fmt == 'facebook' else
             openmmlab_segmentor_checkpoint)
    path = str(tmp_path / f'upernet_{fmt}.pth')
    torch.save(build(source), path)

    model = load_through_api(config, path)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = source(x, mode='tensor')
        got = model(x, mode='tensor')
    assert got.shape == (2, len(CLASSES), 16, 16)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert tuple(model.dataset_meta['classes']) == CLASSES
    assert [list(c) for c in model.dataset_meta['palette']] == PALETTE


def test_segmentor_checkpoint_errors(tmp_path):
    from mmseg.registry import MODELS

    config = upernet_config(tmp_path)
    source = random_source_model(config)
    ckpt = facebook_segmentor_checkpoint(source)
    del ckpt['state_dict']['auxiliary_head.conv_seg.weight']
    ckpt['state_dict']['decode_head.conv_seg.weight'] = torch.zeros(
        150, 16, 1, 1)
    model = MODELS.build(Config.fromfile(config).model)
    with pytest.raises(CheckpointMismatchError) as err:
        load_segmentor_checkpoint(model, ckpt)
    assert str(err.value) == (
        'checkpoint the given state dict was trained for 150 classes '
        '(decode_head.conv_seg.weight has 150 outputs), but the model\'s '
        'decode_head has num_classes=5. Set model.decode_head.num_classes=150 '
        '(with the dataset the checkpoint was trained on), or start from its '
        "backbone only: model.backbone.init_cfg=dict(type='Pretrained', "
        "prefix='backbone.', checkpoint=...).")

    ckpt['state_dict']['decode_head.conv_seg.weight'] = torch.zeros(
        5, 16, 1, 1)
    key = 'decode_head.conv_seg.bias'
    right = ckpt['state_dict'][key]
    ckpt['state_dict'][key] = torch.zeros(7)
    with pytest.raises(CheckpointMismatchError) as err:
        load_segmentor_checkpoint(model, ckpt)
    assert str(err.value) == (
        f'checkpoint the given state dict: {key} has shape (7,) in the '
        'checkpoint but (5,) in the model. Check that the config matches the '
        'checkpoint (in_channels, num_classes, channels).')
    ckpt['state_dict'][key] = right
    with pytest.raises(CheckpointMismatchError) as err:
        load_segmentor_checkpoint(model, ckpt)
    assert str(err.value) == (
        'checkpoint the given state dict lacks 1 weights of the model: '
        'auxiliary_head.conv_seg.weight. Check that the config matches the '
        'checkpoint (heads, auxiliary head, arch).')

    backbone_only = {'model': {k[len('backbone.'):]: v for k, v in
                               source.state_dict().items()
                               if k.startswith('backbone.')}}
    with pytest.raises(CheckpointFormatError, match='is not a whole '
                       'segmentation checkpoint'):
        load_segmentor_checkpoint(model, backbone_only)


def test_segmentor_checkpoint_as_backbone_init(tmp_path):
    config = upernet_config(tmp_path)
    source = random_source_model(config)
    path = tmp_path / 'upernet.pth'
    torch.save(facebook_segmentor_checkpoint(source), path)
    bb = small_backbone(layer_scale_init_value=1.0)
    summary = load_backbone_weights(bb, str(path))
    for name, tensor in bb.state_dict().items():
        assert torch.equal(tensor, source.backbone.state_dict()[name]), name
    assert summary['missing'] == [] and summary['unexpected'] == []
    assert len(summary['unused']) == len(
        [k for k in source.state_dict() if not k.startswith('backbone.')])


def test_dataset_meta_from_both_mmseg_generations():
    old = {'CLASSES': ['a', 'b'], 'PALETTE': [(1, 2, 3), (4, 5, 6)]}
    new = {'dataset_meta': {'classes': ('a', 'b'),
                            'palette': [[1, 2, 3], [4, 5, 6]]}}
    expected = {'classes': ('a', 'b'), 'palette': [[1, 2, 3], [4, 5, 6]]}
    assert dataset_meta_from(old) == expected
    assert dataset_meta_from(new) == expected
    assert dataset_meta_from({'iter': 3}) is None


# ------------------------------------------------------------ module layout

def test_no_import_cycle_between_the_model_and_the_checkpoint_modules():
    # the key maps and the arch table import nothing from the model; the
    # loaders import no model; the model imports the loaders
    import ast
    import inspect

    from convseg.models import (checkpoint_loading, convnext,
                                convnext_archs, convnext_keymaps)

    def imported(module) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.ImportFrom):
                names.add('.' * node.level + (node.module or ''))
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        return names

    def from_convseg(module) -> set[str]:
        return {name for name in imported(module)
                if name.startswith(('.', 'convseg'))}

    assert from_convseg(convnext_keymaps) == {'..errors'}
    assert from_convseg(convnext_archs) == set()
    assert not {'.convnext', '.checkpoints'} & imported(checkpoint_loading)
    assert '.checkpoint_loading' in imported(convnext)


@pytest.mark.parametrize('name, new_home', [
    ('load_backbone_weights', 'convseg.models.checkpoint_loading'),
    ('load_segmentor_checkpoint', 'convseg.models.checkpoint_loading'),
    ('FAMILIES', 'convseg.models.convnext_keymaps'),
    ('convert_state_dict', 'convseg.models.convnext_keymaps'),
    ('read_checkpoint', 'convseg.checkpoint_reading'),
    ('CheckpointMismatchError', 'convseg.errors'),
])
def test_old_checkpoints_module_forwards_with_a_warning(name, new_home):
    import importlib
    import warnings

    from convseg.models import checkpoints
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        old = getattr(checkpoints, name)
    assert old is getattr(importlib.import_module(new_home), name)
    assert [str(w.message) for w in caught] == [
        f'convseg.models.checkpoints.{name} has moved to {new_home}.{name}; '
        'import it from there (the old path goes away in the next release).']
