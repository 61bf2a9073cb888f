"""Every experiment config loads, builds its model and pipelines, and follows
the published recipe.

The expected values are the ConvNeXt segmentation release's (its configs and
README) and, for Cityscapes, the recipe chosen in
configs/upernet_convnext_t_cityscapes.py. Models are built on the meta
device: no memory, no initialisation cost, exact parameter counts.
"""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope

import convseg  # noqa: F401
from mmseg.registry import DATASETS, MODELS, TRANSFORMS

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
FB = 'https://dl.fbaipublicfiles.com/convnext/'

# arch, drop path, base lr, num_layers, AMP, checkpoint, published params (M)
CONVNEXT = {
    'upernet_convnext_t_ade20k.py':
    ('tiny', 0.4, 1e-4, 6, True, 'convnext_tiny_1k_224.pth', 60),
    'upernet_convnext_s_ade20k.py':
    ('small', 0.3, 1e-4, 12, True, 'convnext_small_1k_224.pth', 82),
    'upernet_convnext_b_ade20k.py':
    ('base', 0.4, 1e-4, 12, True, 'convnext_base_1k_224.pth', 122),
    'upernet_convnext_b_ade20k_640.py':
    ('base', 0.4, 1e-4, 12, True, 'convnext_base_22k_224.pth', 122),
    'upernet_convnext_l_ade20k_640.py':
    ('large', 0.4, 1e-4, 12, False, 'convnext_large_22k_224.pth', 235),
    'upernet_convnext_xl_ade20k_640.py':
    ('xlarge', 0.4, 8e-5, 12, False, 'convnext_xlarge_22k_224.pth', 391),
}
CITYSCAPES = {
    'upernet_convnext_t_cityscapes.py': 'upernet_convnext_t_ade20k.py',
    'upernet_convnext_s_cityscapes.py': 'upernet_convnext_s_ade20k.py',
    'upernet_convnext_b_cityscapes.py': 'upernet_convnext_b_ade20k.py',
}
ALL = sorted(p.name for p in CONFIGS.glob('upernet_*.py'))
STAGE0_WIDTH = {'tiny': 96, 'small': 96, 'base': 128, 'large': 192,
                'xlarge': 256}


@pytest.fixture(scope='module', autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def load(name):
    return Config.fromfile(str(CONFIGS / name))


def build_on_meta(cfg):
    model_cfg = cfg.model.copy()
    model_cfg.backbone.init_cfg = None
    with torch.device('meta'):
        return MODELS.build(model_cfg)


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_every_experiment_is_listed():
    assert set(ALL) == set(CONVNEXT) | set(CITYSCAPES) | {
        'upernet_resnext50_ade20k.py', 'upernet_convnext_t_custom.py'}


@pytest.mark.parametrize('name', ALL)
def test_config_builds_model_and_pipelines(name):
    cfg = load(name)
    model = build_on_meta(cfg)
    assert type(model).__name__ == 'EncoderDecoder'
    assert count(model) > 0
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset_cfg = cfg[key].dataset
        for step in dataset_cfg.pipeline:
            TRANSFORMS.build(step)
        dataset = DATASETS.build(dict(dataset_cfg, lazy_init=True))
        assert len(dataset.metainfo['classes']) == \
            cfg.model.decode_head.num_classes
    for step in cfg.tta_pipeline:
        TRANSFORMS.build(step)


@pytest.mark.parametrize('name', sorted(CONVNEXT))
def test_convnext_ade20k_recipe(name):
    arch, drop_path, lr, num_layers, amp, ckpt, params_m = CONVNEXT[name]
    cfg = load(name)
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch) == ('ConvNeXt', arch)
    assert backbone.drop_path_rate == drop_path
    assert backbone.layer_scale_init_value == 1.0
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=FB + ckpt)

    width = STAGE0_WIDTH[arch]
    head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
    assert head.in_channels == [width, 2 * width, 4 * width, 8 * width]
    assert (head.type, head.channels, head.pool_scales, head.dropout_ratio,
            head.num_classes) == ('UPerHead', 512, (1, 2, 3, 6), 0.1, 150)
    assert (aux.type, aux.in_index, aux.in_channels, aux.channels,
            aux.loss_decode.loss_weight) == ('FCNHead', 2, 4 * width, 256,
                                             0.4)
    assert head.norm_cfg.type == aux.norm_cfg.type == 'SyncBN'

    optim = cfg.optim_wrapper
    assert optim.type == ('AmpOptimWrapper' if amp else 'OptimWrapper')
    assert optim.constructor == 'LayerDecayOptimWrapperConstructor'
    assert optim.optimizer == dict(type='AdamW', lr=lr, betas=(0.9, 0.999),
                                   weight_decay=0.05)
    assert optim.paramwise_cfg == dict(decay_rate=0.9,
                                       decay_type='stage_wise',
                                       num_layers=num_layers)

    crop = 640 if name.endswith('_640.py') else 512
    stride = {512: 341, 640: 426}[crop]
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(crop, crop),
                                      stride=(stride, stride))
    assert cfg.model.data_preprocessor.size == (crop, crop)
    crops = [s.crop_size for s in cfg.train_dataloader.dataset.pipeline
             if s.type == 'RandomCrop']
    assert crops == [(crop, crop)]
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    assert cfg.train_cfg.max_iters == 160000

    # the published parameter counts, in millions, rounded
    assert round(count(build_on_meta(cfg)) / 1e6) == params_m


def test_convnext_t_has_60_2m_parameters():
    model = build_on_meta(load('upernet_convnext_t_ade20k.py'))
    assert round(count(model) / 1e5) == 602


@pytest.mark.parametrize('name', sorted(CITYSCAPES))
def test_cityscapes_keeps_the_convnext_parts_of_its_ade20k_twin(name):
    cfg, twin = load(name), load(CITYSCAPES[name])
    assert cfg.model.backbone == twin.model.backbone
    assert cfg.optim_wrapper == twin.optim_wrapper
    assert cfg.model.decode_head.num_classes == 19
    assert cfg.model.auxiliary_head.num_classes == 19
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 1024),
                                      stride=(341, 682))
    crops = [s.crop_size for s in cfg.train_dataloader.dataset.pipeline
             if s.type == 'RandomCrop']
    assert crops == [(512, 1024)]
    assert cfg.train_cfg.max_iters == 80000
    assert cfg.test_evaluator.label_ids == [
        7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32,
        33]
    # the same model but for 131 fewer outputs of the two classifiers
    # (1x1 convs on 512 and 256 channels, with bias)
    fewer = (512 + 1) * 131 + (256 + 1) * 131
    assert count(build_on_meta(twin)) - count(build_on_meta(cfg)) == fewer


def test_cityscapes_label_ids_are_the_official_train_id_mapping():
    from cityscapesscripts.helpers.labels import labels
    official = {label.trainId: label.id for label in labels
                if 0 <= label.trainId < 255}
    cfg = load('upernet_convnext_t_cityscapes.py')
    assert cfg.test_evaluator.label_ids == [official[i] for i in range(19)]


def test_resnext50_baseline_shares_heads_and_length():
    cfg, convnext = load('upernet_resnext50_ade20k.py'), load(
        'upernet_convnext_t_ade20k.py')
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.depth, backbone.groups,
            backbone.base_width) == ('ResNeXt', 50, 32, 4)
    for key in ('decode_head', 'auxiliary_head'):
        head, other = cfg.model[key].copy(), convnext.model[key].copy()
        head.pop('in_channels')
        other.pop('in_channels')
        assert head == other
    assert cfg.model.test_cfg == convnext.model.test_cfg
    assert cfg.train_cfg == convnext.train_cfg
    assert cfg.train_dataloader == convnext.train_dataloader
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.01,
                                               momentum=0.9,
                                               weight_decay=0.0005)
    # the backbone is torchvision's ResNeXt-50 32x4d without its classifier:
    # 25,028,904 parameters, less 2048 x 1000 + 1000 for the fc layer
    model = build_on_meta(cfg)
    assert count(model.backbone) == 25028904 - 2049000


def lr_curve(cfg, steps):
    """The lr of the config's schedulers at iterations 0 .. steps - 1."""
    param = torch.nn.Parameter(torch.zeros(1))
    wrapper = OptimWrapper(torch.optim.SGD([param],
                                           lr=cfg.optim_wrapper.optimizer.lr))
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper))
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(steps):
        lrs.append(wrapper.optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()
    return np.array(lrs)


@pytest.mark.filterwarnings('ignore:Detected call of `scheduler.step')
@pytest.mark.parametrize('name,iters', [('upernet_convnext_t_ade20k.py',
                                         160000),
                                        ('upernet_convnext_t_cityscapes.py',
                                         80000)])
def test_lr_schedule_is_the_released_formula(name, iters):
    # mmcv's poly with linear warm-up (warmup_ratio 1e-6, 1500 iterations),
    # as the release trained: lr(t) = base * (1 - t / T) * w(t)
    cfg = load(name)
    assert cfg.train_cfg.max_iters == iters
    t = np.arange(iters, dtype=np.float64)
    warmup = np.where(t < 1500, 1e-6 + (1 - 1e-6) * t / 1500, 1.0)
    expected = 1e-4 * (1 - t / iters) * warmup
    np.testing.assert_allclose(lr_curve(cfg, iters), expected, rtol=1e-9)



def bases(path: Path) -> list[Path]:
    """The files a config names in ``_base_``, read without running it."""
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and
                [getattr(t, 'id', None) for t in node.targets] == ['_base_']):
            names = ast.literal_eval(node.value)
            names = [names] if isinstance(names, str) else names
            return [(path.parent / name).resolve() for name in names]
    return []


def levels(path: Path, stop) -> int:
    """How many ``_base_`` steps lead from ``path`` to files where ``stop``
    holds, along its longest chain."""
    if stop(path):
        return 0
    return 1 + max((levels(base, stop) for base in bases(path)), default=-1)


def in_base_dir(path: Path) -> bool:
    return (CONFIGS / '_base_') in path.parents


def test_levels_count_the_longest_chain(tmp_path):
    (tmp_path / '_base_').mkdir()
    (tmp_path / '_base_' / 'a.py').write_text('x = 1\n')
    (tmp_path / 'one.py').write_text("_base_ = './_base_/a.py'\n")
    (tmp_path / 'two.py').write_text("_base_ = ['./_base_/a.py', 'one.py']\n")
    (tmp_path / 'three.py').write_text("_base_ = ['two.py']\n")
    is_base = lambda p: p.parent.name == '_base_'  # noqa: E731
    assert [levels(tmp_path / f'{n}.py', is_base)
            for n in ('one', 'two', 'three')] == [1, 2, 3]


@pytest.mark.parametrize('name', sorted(p.name for p in CONFIGS.glob('*.py')))
def test_experiment_is_at_most_two_levels_from_its_bases(name):
    path = CONFIGS / name
    assert levels(path, in_base_dir) <= 2
    for base in bases(path):
        assert base.is_file(), f'{name} names {base}, which does not exist'


@pytest.mark.parametrize('path', sorted(CONFIGS.glob('_base_/**/*.py')),
                         ids=lambda p: str(p.relative_to(CONFIGS)))
def test_base_derives_at_most_once_within_its_concern(path):
    assert levels(path, lambda p: not bases(p)) <= 1


def top_level_names(path: Path) -> set[str]:
    return {t.id for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name) and t.id != '_base_'}


def test_schedules_hold_only_schedules_and_optimizers_only_optimizers():
    for path in CONFIGS.glob('_base_/schedules/*.py'):
        assert top_level_names(path) <= {
            'param_scheduler', 'train_cfg', 'val_cfg', 'test_cfg',
            'default_hooks'}, path.name
    optimizers = list(CONFIGS.glob('_base_/optimizers/*.py'))
    assert optimizers
    for path in optimizers:
        assert top_level_names(path) == {'optim_wrapper'}, path.name


# The recipe of each experiment as DESIGN.md gives it (Cityscapes: the
# ADE20K parts on mmseg's 80k schedule; ResNeXt: mmseg's SGD recipe; the
# custom config: ConvNeXt-T's), which the configs resolved to before
# the optimizer moved out of the schedule: optim wrapper, optimizer, lr,
# layer decay rate, num_layers, drop path, iterations, warm-up end.
ADAMW_T = ('AdamW', 1e-4, 0.9, 6, 0.4)
ADAMW_12 = ('AdamW', 1e-4, 0.9, 12, 0.4)
RECIPES = {
    'upernet_convnext_t_ade20k.py': ('AmpOptimWrapper', *ADAMW_T, 160000),
    'upernet_convnext_s_ade20k.py':
    ('AmpOptimWrapper', 'AdamW', 1e-4, 0.9, 12, 0.3, 160000),
    'upernet_convnext_b_ade20k.py': ('AmpOptimWrapper', *ADAMW_12, 160000),
    'upernet_convnext_b_ade20k_640.py':
    ('AmpOptimWrapper', *ADAMW_12, 160000),
    'upernet_convnext_l_ade20k_640.py': ('OptimWrapper', *ADAMW_12, 160000),
    'upernet_convnext_xl_ade20k_640.py':
    ('OptimWrapper', 'AdamW', 8e-5, 0.9, 12, 0.4, 160000),
    'upernet_convnext_t_cityscapes.py': ('AmpOptimWrapper', *ADAMW_T, 80000),
    'upernet_convnext_s_cityscapes.py':
    ('AmpOptimWrapper', 'AdamW', 1e-4, 0.9, 12, 0.3, 80000),
    'upernet_convnext_b_cityscapes.py': ('AmpOptimWrapper', *ADAMW_12, 80000),
    'upernet_convnext_t_custom.py': ('AmpOptimWrapper', *ADAMW_T, 160000),
    'upernet_resnext50_ade20k.py':
    ('OptimWrapper', 'SGD', 0.01, None, None, None, 160000),
}


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_resolved_recipe(name):
    cfg = load(name)
    optim = cfg.optim_wrapper
    paramwise = optim.get('paramwise_cfg', {})
    assert (optim.type, optim.optimizer.type, optim.optimizer.lr,
            paramwise.get('decay_rate'), paramwise.get('num_layers'),
            cfg.model.backbone.get('drop_path_rate'),
            cfg.train_cfg.max_iters) == RECIPES[name]
    warmup = [s for s in cfg.param_scheduler if s.type == 'LinearLR']
    if optim.optimizer.type == 'AdamW':
        assert optim.constructor == 'LayerDecayOptimWrapperConstructor'
        assert [(s.start_factor, s.end) for s in warmup] == [(1e-6, 1501)]
    else:
        assert 'constructor' not in optim and warmup == []
