"""LayerDecayOptimWrapperConstructor on real mmseg UPerNet models.

The expected layer ids, learning rates and weight decays are computed here from
the rule as the recipe states it, from each parameter's name, without calling
the backbone's hook.
"""
from __future__ import annotations

import logging
import math
import re
from collections import Counter

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import DefaultScope

import convseg  # noqa: F401
from convseg.engine import LayerDecayOptimWrapperConstructor
from mmseg.registry import MODELS, PARAM_SCHEDULERS

BASE_LR = 1e-4
BASE_WD = 0.05
DECAY_RATE = 0.9
DIMS = {
    'atto': (40, 80, 160, 320),
    'tiny': (96, 192, 384, 768),
    'base': (128, 256, 512, 1024),
}


# --------------------------------------------------------------- helpers
def segmentor_cfg(arch: str, **backbone) -> dict:
    """UPerNet (UPerHead + FCNHead on stage 3) config with a ConvNeXt."""
    dims = list(DIMS[arch])
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size=(32, 32)),
        backbone=dict(type='ConvNeXt', arch=arch, **backbone),
        decode_head=dict(
            type='UPerHead', in_channels=dims, in_index=[0, 1, 2, 3],
            pool_scales=(1, 2, 3, 6), channels=16, dropout_ratio=0.1,
            num_classes=5, norm_cfg=norm_cfg, align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        auxiliary_head=dict(
            type='FCNHead', in_channels=dims[2], in_index=2, channels=16,
            num_convs=1, concat_input=False, dropout_ratio=0.1,
            num_classes=5, norm_cfg=norm_cfg, align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)))


def build_model(cfg: dict) -> nn.Module:
    """Build a model config through mmseg's registry, as the runner does."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)


def optim_cfg(decay_type: str = 'stage_wise',
              num_layers: int = 6,
              wrapper: str = 'OptimWrapper',
              **paramwise) -> dict:
    """The optim_wrapper config of the recipe."""
    return dict(
        type=wrapper,
        optimizer=dict(type='AdamW', lr=BASE_LR, betas=(0.9, 0.999),
                       weight_decay=BASE_WD),
        constructor='LayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(decay_rate=DECAY_RATE, decay_type=decay_type,
                           num_layers=num_layers, **paramwise))


def build(model: nn.Module, cfg: dict) -> OptimWrapper:
    """mmengine's build_optim_wrapper in mmseg's scope, as in a run."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        return build_optim_wrapper(model, cfg)


def expected_layer_id(name: str, num_layers: int, decay_type: str) -> int:
    """Layer id of a model parameter by the recipe's rule."""
    if not name.startswith('backbone.'):
        return num_layers + 1
    parts = name.split('.')
    if parts[1] == 'downsample_layers':
        if decay_type == 'stage_wise':
            return 0
        return {0: 0, 1: 2, 2: 3, 3: num_layers}[int(parts[2])]
    if parts[1] == 'stages':
        stage = int(parts[2])
        if decay_type == 'stage_wise':
            return stage + 1
        return {0: 1, 1: 2, 2: 3 + int(parts[3]) // 3, 3: num_layers}[stage]
    assert re.fullmatch(r'norm[0-3]', parts[1]), name
    return num_layers + 1


def expected_no_decay(name: str, param: torch.Tensor) -> bool:
    """1-D tensors, biases and GRN parameters get no weight decay."""
    return param.ndim == 1 or name.endswith('.bias') or '.grn.' in name


def groups_by_param(wrapper: OptimWrapper) -> dict[int, dict]:
    """Map id(param) -> its param group, checking no tensor is in two."""
    owner: dict[int, dict] = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in owner, 'a tensor is in two param groups'
            owner[id(param)] = group
    return owner


def check_rule(model: nn.Module,
               wrapper: OptimWrapper,
               num_layers: int,
               decay_type: str,
               mults: dict[str, tuple[float, float]] | None = None) -> None:
    """Every trainable tensor sits in one group with the rule's lr and wd.

    ``mults`` maps a name prefix to (lr_mult, decay_mult).
    """
    mults = mults or {}
    owner = groups_by_param(wrapper)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(owner) == {id(p) for p in trainable.values()}
    kinds = set()
    for name, param in trainable.items():
        lr_mult, decay_mult = next(
            (m for prefix, m in mults.items() if name.startswith(prefix)),
            (1.0, 1.0))
        layer_id = expected_layer_id(name, num_layers, decay_type)
        no_decay = expected_no_decay(name, param)
        lr = BASE_LR * lr_mult * DECAY_RATE**(num_layers + 1 - layer_id)
        wd = 0.0 if no_decay else BASE_WD * decay_mult
        group = owner[id(param)]
        assert math.isclose(group['lr'], lr, rel_tol=1e-12), name
        assert group['weight_decay'] == pytest.approx(wd, rel=1e-12), name
        assert group['layer_id'] == layer_id, name
        kinds.add((layer_id, no_decay, lr_mult, decay_mult))
    assert len(wrapper.optimizer.param_groups) == len(kinds)


@pytest.fixture(scope='module')
def upernet_tiny() -> nn.Module:
    return build_model(segmentor_cfg('tiny'))


@pytest.fixture(scope='module')
def upernet_base() -> nn.Module:
    return build_model(segmentor_cfg('base'))


@pytest.fixture(scope='module')
def upernet_atto() -> nn.Module:
    return build_model(segmentor_cfg('atto'))


# ----------------------------------------------------------- the rule
@pytest.mark.parametrize('decay_type', ['stage_wise', 'layer_wise'])
def test_convnext_tiny_num_layers_6(upernet_tiny: nn.Module,
                                    decay_type: str) -> None:
    wrapper = build(upernet_tiny, optim_cfg(decay_type, 6))
    assert type(wrapper) is OptimWrapper
    assert type(wrapper.optimizer) is torch.optim.AdamW
    check_rule(upernet_tiny, wrapper, 6, decay_type)


@pytest.mark.parametrize('decay_type', ['stage_wise', 'layer_wise'])
def test_convnext_base_num_layers_12(upernet_base: nn.Module,
                                     decay_type: str) -> None:
    wrapper = build(upernet_base, optim_cfg(decay_type, 12))
    check_rule(upernet_base, wrapper, 12, decay_type)


@pytest.mark.parametrize(
    'arch, decay_type, num_layers, name, power, weight_decay', [
        ('tiny', 'stage_wise', 6, 'backbone.downsample_layers.0.0.weight', 7,
         BASE_WD),
        ('tiny', 'stage_wise', 6, 'backbone.stages.0.1.pwconv1.weight', 6,
         BASE_WD),
        ('tiny', 'stage_wise', 6, 'backbone.stages.3.2.gamma', 3, 0.0),
        ('tiny', 'stage_wise', 6, 'backbone.norm3.weight', 0, 0.0),
        ('tiny', 'stage_wise', 6, 'decode_head.conv_seg.weight', 0, BASE_WD),
        ('tiny', 'layer_wise', 6, 'backbone.downsample_layers.1.1.weight', 5,
         BASE_WD),
        ('tiny', 'layer_wise', 6, 'backbone.downsample_layers.3.1.bias', 1,
         0.0),
        ('tiny', 'layer_wise', 6, 'backbone.stages.2.8.dwconv.weight', 2,
         BASE_WD),
        ('base', 'stage_wise', 12, 'backbone.downsample_layers.0.0.weight', 13,
         BASE_WD),
        ('base', 'stage_wise', 12, 'backbone.stages.3.0.pwconv2.weight', 9,
         BASE_WD),
        ('base', 'layer_wise', 12, 'backbone.stages.2.26.pwconv1.weight', 2,
         BASE_WD),
        ('base', 'layer_wise', 12, 'backbone.stages.3.1.norm.weight', 1, 0.0),
        ('base', 'layer_wise', 12, 'auxiliary_head.convs.0.conv.weight', 0,
         BASE_WD),
    ])
def test_hand_computed_values(request: pytest.FixtureRequest, arch: str,
                              decay_type: str, num_layers: int, name: str,
                              power: int, weight_decay: float) -> None:
    model = request.getfixturevalue(f'upernet_{arch}')
    wrapper = build(model, optim_cfg(decay_type, num_layers))
    group = groups_by_param(wrapper)[id(model.get_parameter(name))]
    assert math.isclose(group['lr'], BASE_LR * 0.9**power, rel_tol=1e-12)
    assert group['weight_decay'] == weight_decay


def test_num_layers_12_puts_the_backbone_far_below_the_heads(
        upernet_base: nn.Module) -> None:
    wrapper = build(upernet_base, optim_cfg('stage_wise', 12))
    owner = groups_by_param(wrapper)
    backbone, heads = set(), set()
    for name, param in upernet_base.named_parameters():
        scale = owner[id(param)]['lr'] / BASE_LR
        if re.match(r'backbone\.(downsample_layers|stages)\.', name):
            backbone.add(round(math.log(scale, 0.9), 9))
        elif name.startswith(('decode_head.', 'auxiliary_head.')):
            heads.add(scale)
    assert backbone == {13.0, 12.0, 11.0, 10.0, 9.0}
    assert heads == {1.0}


def test_convnext_v2_grn_parameters_get_no_weight_decay() -> None:
    model = build_model(segmentor_cfg('atto', use_grn=True))
    grn = [(n, p) for n, p in model.named_parameters() if '.grn.' in n]
    assert len(grn) == 2 * sum((2, 2, 6, 2))
    assert all(p.ndim == 4 for _, p in grn)
    wrapper = build(model, optim_cfg('layer_wise', 5))
    owner = groups_by_param(wrapper)
    assert all(owner[id(p)]['weight_decay'] == 0.0 for _, p in grn)
    check_rule(model, wrapper, 5, 'layer_wise')


def test_decay_rate_1_gives_every_group_the_base_lr(
        upernet_atto: nn.Module) -> None:
    cfg = optim_cfg('stage_wise', 4)
    cfg['paramwise_cfg']['decay_rate'] = 1.0
    wrapper = build(upernet_atto, cfg)
    assert {g['lr'] for g in wrapper.optimizer.param_groups} == {BASE_LR}
    assert len(wrapper.optimizer.param_groups) == 2 * 6


# ------------------------------------------------------ frozen and logging
def test_frozen_stages_are_left_out_and_one_table_is_logged() -> None:
    model = build_model(segmentor_cfg('tiny', frozen_stages=2))
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(
        re.match(r'backbone\.(downsample_layers\.[01]|stages\.[01]|norm[01])\.',
                 n) for n in frozen)
    assert any(n.startswith('backbone.stages.1.') for n in frozen)

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        wrapper = build(model, optim_cfg('layer_wise', 6))
    finally:
        logger.removeHandler(handler)

    check_rule(model, wrapper, 6, 'layer_wise')
    frozen_ids = {id(model.get_parameter(n)) for n in frozen}
    assert frozen_ids.isdisjoint(groups_by_param(wrapper))

    messages = [r.getMessage() for r in records if r.levelno >= logging.INFO]
    assert len(messages) == 1, messages
    lines = messages[0].splitlines()
    groups = wrapper.optimizer.param_groups
    assert lines[0] == (
        "Layer-wise lr decay (layer_wise, decay_rate=0.9, num_layers=6): "
        f"{len(groups)} param groups, lr scale relative to lr=0.0001")
    assert lines[1].split() == ['group', 'layer', 'id', 'lr', 'scale',
                                'weight', 'decay', 'tensors', 'parameters']
    rows = [line.split() for line in lines[2:-1]]
    assert len(rows) == len(groups)
    layer_ids = [group['layer_id'] for group in groups]
    assert layer_ids == sorted(layer_ids)
    for row, group in zip(rows, groups):
        assert int(row[1]) == group['layer_id']
        assert float(row[2]) == pytest.approx(group['lr'] / BASE_LR, rel=1e-3)
        assert float(row[3]) == pytest.approx(group['weight_decay'])
        assert int(row[4]) == len(group['params'])
        assert int(row[5].replace(',', '')) == sum(
            p.numel() for p in group['params'])
    frozen_numel = sum(model.get_parameter(n).numel() for n in frozen)
    assert lines[-1] == (f'frozen (left out): {len(frozen)} tensors, '
                         f'{frozen_numel:,} parameters')


# ------------------------------------------------ standard options on top
def test_custom_keys_apply_on_top(upernet_tiny: nn.Module) -> None:
    custom_keys = {
        'decode_head': dict(lr_mult=10.0),
        'backbone.stages.3': dict(lr_mult=0.5, decay_mult=0.2),
    }
    wrapper = build(upernet_tiny,
                    optim_cfg('stage_wise', 6, custom_keys=custom_keys))
    check_rule(upernet_tiny, wrapper, 6, 'stage_wise', mults={
        'decode_head.': (10.0, 1.0),
        'backbone.stages.3.': (0.5, 0.2),
    })
    conv_seg = groups_by_param(wrapper)[id(
        upernet_tiny.get_parameter('decode_head.conv_seg.weight'))]
    assert conv_seg['lr'] == pytest.approx(10 * BASE_LR)
    assert conv_seg['lr_mult'] == 10.0


def test_config_file_as_a_user_writes_it(tmp_path,
                                         upernet_atto: nn.Module) -> None:
    config = tmp_path / 'schedule.py'
    config.write_text(
        "default_scope = 'mmseg'\n"
        "optim_wrapper = dict(\n"
        "    type='OptimWrapper',\n"
        "    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999),\n"
        "                   weight_decay=0.05),\n"
        "    constructor='LayerDecayOptimWrapperConstructor',\n"
        "    paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise',\n"
        "                       num_layers=6))\n")
    cfg = Config.fromfile(str(config))
    wrapper = build(upernet_atto, cfg.optim_wrapper)
    check_rule(upernet_atto, wrapper, 6, 'layer_wise')


def test_schedulers_keep_the_layer_ratios(upernet_atto: nn.Module) -> None:
    wrapper = build(upernet_atto, optim_cfg('stage_wise', 6))
    start = [g['lr'] for g in wrapper.optimizer.param_groups]
    with DefaultScope.overwrite_default_scope('mmseg'):
        schedulers = [
            PARAM_SCHEDULERS.build(
                dict(type='LinearLR', start_factor=1e-6, by_epoch=False,
                     begin=0, end=3),
                default_args=dict(optimizer=wrapper)),
            PARAM_SCHEDULERS.build(
                dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False,
                     begin=3, end=10),
                default_args=dict(optimizer=wrapper)),
        ]
    factors = []
    for _ in range(6):
        lrs = [g['lr'] for g in wrapper.optimizer.param_groups]
        factors.append(lrs[-1] / start[-1])
        assert lrs == pytest.approx([lr * factors[-1] for lr in start],
                                    rel=1e-9)
        wrapper.step()
        for scheduler in schedulers:
            scheduler.step()
    assert factors[0] == pytest.approx(1e-6)
    assert factors[3] == pytest.approx(1.0)
    assert 0 < factors[5] < factors[4] < factors[3]


# --------------------------------------------------------- wrapped models
def test_ddp_wrapped_model_module_prefix(tmp_path) -> None:
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    model = build_model(segmentor_cfg('atto'))
    try:
        ddp = MMDistributedDataParallel(module=model)
        names = [n for n, _ in ddp.named_parameters()]
        assert names and all(n.startswith('module.') for n in names)
        wrapper = build(ddp, optim_cfg('layer_wise', 6))
    finally:
        dist.destroy_process_group()
    check_rule(model, wrapper, 6, 'layer_wise')


@pytest.mark.skipif(torch.cuda.is_available(), reason='runs where no GPU is')
def test_amp_optim_wrapper_type_is_passed_to_mmengine(
        upernet_atto: nn.Module) -> None:
    # Without a GPU mmengine's AmpOptimWrapper refuses to be built; reaching
    # its check shows the constructor built the wrapper type the config asked.
    with pytest.raises(AssertionError, match='AmpOptimizerWrapper'):
        build(upernet_atto,
              optim_cfg('stage_wise', 6, wrapper='AmpOptimWrapper'))


# ------------------------------------------------------------ bad settings
MISSING_EXAMPLE = ("which layer-wise lr decay needs; for example paramwise_cfg="
                   "dict(decay_rate=0.9, decay_type='stage_wise', "
                   "num_layers=6)")


@pytest.mark.parametrize('paramwise_cfg, message', [
    (dict(decay_rate=0.9, decay_type='block_wise', num_layers=6),
     "paramwise_cfg.decay_type must be 'stage_wise' or 'layer_wise', "
     "got 'block_wise'"),
    (dict(decay_rate=0.0, decay_type='stage_wise', num_layers=6),
     'paramwise_cfg.decay_rate must be a number in (0, 1], got 0.0'),
    (dict(decay_rate=1.1, decay_type='stage_wise', num_layers=6),
     'paramwise_cfg.decay_rate must be a number in (0, 1], got 1.1'),
    (dict(decay_rate='0.9', decay_type='stage_wise', num_layers=6),
     "paramwise_cfg.decay_rate must be a number in (0, 1], got '0.9'"),
    (dict(decay_rate=0.9, decay_type='stage_wise', num_layers=0),
     'paramwise_cfg.num_layers must be an integer >= 1, got 0'),
    (dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6.0),
     'paramwise_cfg.num_layers must be an integer >= 1, got 6.0'),
    (None,
     "paramwise_cfg is missing 'decay_rate', 'decay_type', 'num_layers' "
     "(decay_rate: a number in (0, 1]; decay_type: 'stage_wise' or "
     "'layer_wise'; num_layers: an integer >= 1), " + MISSING_EXAMPLE),
])
def test_bad_settings(paramwise_cfg: dict | None, message: str) -> None:
    optimizer = dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD)
    with pytest.raises(ValueError) as error:
        LayerDecayOptimWrapperConstructor(
            dict(type='OptimWrapper', optimizer=optimizer), paramwise_cfg)
    assert str(error.value) == message


@pytest.mark.parametrize('key', ['lr', 'weight_decay'])
def test_optimizer_without_lr_or_weight_decay(key: str) -> None:
    optimizer = dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD)
    del optimizer[key]
    with pytest.raises(ValueError) as error:
        LayerDecayOptimWrapperConstructor(
            dict(type='OptimWrapper', optimizer=optimizer),
            dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
    assert str(error.value) == (
        f"optim_wrapper.optimizer has no '{key}'; "
        'LayerDecayOptimWrapperConstructor scales lr per layer and sets '
        'weight decay per group, so set both lr and weight_decay '
        '(weight_decay=0 for none)')


@pytest.mark.parametrize('arch, decay_type, num_layers, minimum', [
    ('tiny', 'layer_wise', 5, 6),
    ('base', 'layer_wise', 11, 12),
    ('tiny', 'stage_wise', 3, 4),
])
def test_num_layers_below_the_backbone_minimum(request: pytest.FixtureRequest,
                                               arch: str, decay_type: str,
                                               num_layers: int,
                                               minimum: int) -> None:
    model = request.getfixturevalue(f'upernet_{arch}')
    with pytest.raises(ValueError) as error:
        build(model, optim_cfg(decay_type, num_layers))
    assert str(error.value) == (
        f'paramwise_cfg.num_layers={num_layers} is too small for ConvNeXt '
        f"with decay_type='{decay_type}': allowed values are integers >= "
        f'{minimum}')


def test_model_without_backbone() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    with pytest.raises(TypeError) as error:
        build(model, optim_cfg())
    assert str(error.value) == (
        'LayerDecayOptimWrapperConstructor needs a model with a `backbone` '
        'submodule; Sequential has none. Use the '
        'DefaultOptimWrapperConstructor for this model.')


def test_backbone_without_the_hook() -> None:
    cfg = segmentor_cfg('atto')
    cfg['backbone'] = dict(type='ResNetV1c', depth=18, stem_channels=8,
                           base_channels=8)
    cfg['decode_head'] = dict(
        type='FCNHead', in_channels=64, in_index=3, channels=8, num_convs=1,
        num_classes=5)
    cfg.pop('auxiliary_head')
    model = build_model(cfg)
    with pytest.raises(TypeError) as error:
        build(model, optim_cfg())
    assert str(error.value) == (
        "ResNetV1c has neither get_layer_id(param_name, num_layers, "
        "decay_type) (convseg's ConvNeXt) nor get_layer_depth(param_name, "
        "prefix) (mmpretrain's backbones), so "
        'LayerDecayOptimWrapperConstructor cannot give its parameters layer '
        'ids. Use a backbone that provides one or the '
        'DefaultOptimWrapperConstructor.')


def test_every_group_is_a_distinct_layer_decay_kind(
        upernet_tiny: nn.Module) -> None:
    wrapper = build(upernet_tiny, optim_cfg('layer_wise', 6))
    kinds = Counter((g['layer_id'], g['weight_decay'] == 0.0)
                    for g in wrapper.optimizer.param_groups)
    assert max(kinds.values()) == 1
    assert sorted(kinds) == [(i, nd) for i in (0, 1, 2, 3, 4, 5, 6, 7)
                             for nd in (False, True)]


def test_convnext_without_decay_type_and_num_layers(
        upernet_atto: nn.Module) -> None:
    cfg = optim_cfg()
    cfg['paramwise_cfg'] = dict(decay_rate=0.9)
    with pytest.raises(ValueError) as error:
        build(upernet_atto, cfg)
    assert str(error.value) == (
        "paramwise_cfg is missing 'decay_type', 'num_layers' (decay_type: "
        "'stage_wise' or 'layer_wise'; num_layers: an integer >= 1), "
        + MISSING_EXAMPLE)


# ------------------------------------------- mmpretrain's backbone contract
# mmpretrain needs torchvision, which does not install beside the CPU torch
# used here, so its contract is tested with a small backbone written here:
# get_layer_depth(param_name, prefix) -> (layer_id, max_layer_id) as its
# VisionTransformer answers it (patch embedding and tokens 0, block i i + 1,
# everything else, heads included, max_layer_id - 1).
@MODELS.register_module(name='LayerDepthTestViT', force=True)
class LayerDepthTestViT(nn.Module):
    """Patch embedding, ``depth`` token-mixing blocks, a final norm."""

    def __init__(self, depth: int = 3, dim: int = 8) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 4, stride=4)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, 8, 8))
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))
        self.ln1 = nn.LayerNorm(dim)
        self.depth = depth

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.patch_embed(x) + self.pos_embed
        tokens = x.flatten(2).transpose(1, 2)
        for layer in self.layers:
            tokens = tokens + layer(tokens)
        return (self.ln1(tokens).transpose(1, 2).reshape(x.shape), )

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> tuple[int, int]:
        count = self.depth + 2
        if not param_name.startswith(prefix):
            return count - 1, count
        name = param_name[len(prefix):]
        if name.startswith(('patch_embed', 'pos_embed')):
            return 0, count
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, count
        return count - 1, count


def vit_segmentor() -> nn.Module:
    return build_model(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size=(32, 32)),
        backbone=dict(type='LayerDepthTestViT'),
        decode_head=dict(
            type='FCNHead', in_channels=8, in_index=0, channels=8,
            num_convs=1, num_classes=5,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0))))


def test_mmpretrain_contract_backbone_gets_mmpretrains_rule() -> None:
    model = vit_segmentor()
    cfg = optim_cfg()
    cfg['paramwise_cfg'] = dict(decay_rate=0.5)
    wrapper = build(model, cfg)
    owner = groups_by_param(wrapper)
    # 5 layer ids (max_layer_id 5): lr * 0.5 ** (5 - 1 - id)
    expected = {'backbone.patch_embed.weight': (0, 0.0625),
                'backbone.patch_embed.bias': (0, 0.0625),
                'backbone.pos_embed': (0, 0.0625),
                'backbone.layers.0.weight': (1, 0.125),
                'backbone.layers.1.bias': (2, 0.25),
                'backbone.layers.2.weight': (3, 0.5),
                'backbone.ln1.weight': (4, 1.0),
                'decode_head.conv_seg.weight': (4, 1.0),
                'decode_head.convs.0.conv.weight': (4, 1.0)}
    params = dict(model.named_parameters())
    for name, (layer_id, scale) in expected.items():
        group = owner[id(params[name])]
        assert group['layer_id'] == layer_id, name
        assert math.isclose(group['lr'], BASE_LR * scale), name
    assert owner[id(params['backbone.layers.0.weight'])]['weight_decay'] == \
        BASE_WD
    assert owner[id(params['backbone.layers.0.bias'])]['weight_decay'] == 0
    assert len(owner) == len(params)


def test_mmpretrain_contract_backbone_ignores_convseg_settings() -> None:
    model = vit_segmentor()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        wrapper = build(model, optim_cfg('stage_wise', 6))
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records if r.levelno >= logging.INFO]
    assert messages[0] == (
        'paramwise_cfg decay_type and num_layers ignored: LayerDepthTestViT '
        "gives its own layer ids through mmpretrain's get_layer_depth")
    assert messages[1].splitlines()[0] == (
        'Layer-wise lr decay (LayerDepthTestViT.get_layer_depth, '
        f'decay_rate=0.9): {len(wrapper.optimizer.param_groups)} param '
        'groups, lr scale relative to lr=0.0001')
    assert sorted({g['layer_id'] for g in wrapper.optimizer.param_groups}) \
        == [0, 1, 2, 3, 4]
