"""Loading checkpoints into convseg's models: backbone weights with a prefix
and a summary, fit errors that name the key, the shape or the arch, whole
segmentation checkpoints that give the source model's logits."""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import convseg  # noqa: F401
from convseg.apis import init_model
from convseg.errors import CheckpointFormatError, CheckpointMismatchError
from convseg.models.checkpoint_loading import (dataset_meta_from,
                                               load_backbone_weights,
                                               load_segmentor_checkpoint)
from convseg.models.convnext import ConvNeXt
from .published_layouts import (CLASSIFIER_KEYS, DEPTHS, DIMS, assert_landed,
                                facebook_pairs, openmmlab_pairs,
                                published_state_dict, small_backbone,
                                timm_pairs)


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
