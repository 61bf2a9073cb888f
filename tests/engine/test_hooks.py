"""Crash-safe checkpoints, random streams and non-finite guards, in-process.

The runs here use mmengine's Runner on the project's configs with a tiny
ConvNeXt UPerNet and a generated ADE20K-layout dataset.
"""
import errno
import os
import random
import zipfile

import numpy as np
import pytest
import torch

import convseg  # noqa: F401
from convseg.engine.checkpoint_io import (find_resume_checkpoint,
                                          is_complete_checkpoint)
from convseg.engine.hooks import (RANDOM_STATE_KEY, AtomicCheckpointHook,
                                  CheckpointSaveError, NonFiniteWeightsError)
from convseg.errors import CheckpointFormatError
from convseg.engine.random_state import (capture_random_state,
                                         restore_random_state,
                                         state_from_plain, state_to_plain)
from convseg.fileio import atomic_write_bytes, temporary_path

TINY_CONFIG = '''
_base_ = [
    '{tiny}',
    '{repo}/configs/_base_/datasets/ade20k.py',
    '{repo}/configs/_base_/default_runtime.py',
    '{repo}/configs/_base_/schedules/schedule_160k.py',
]
crop = (32, 32)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop),
    backbone=dict(drop_path_rate=0.2),
    decode_head=dict(norm_cfg=norm_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root='{data_root}', pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomCrop', crop_size=crop),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs'),
    ]))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr={lr}))
param_scheduler = []
train_cfg = dict(max_iters={max_iters}, val_interval=1000)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(type='AtomicCheckpointHook', interval={interval},
                    max_keep_ckpts={max_keep}))
custom_hooks = [dict(type='RandomStateHook'), dict(type='NonFiniteCheckHook'),
                dict(type='CheckpointMatchHook')]
randomness = dict(seed=0, deterministic=True)
work_dir = '{work_dir}'
'''


@pytest.fixture(scope='module')
def ade_48x48(dataset):
    return dataset('ade20k', num_train=4, num_val=1, size=(48, 48))


@pytest.fixture
def build_runner(repo_root, tiny_config):
    """``build_runner(tmp_path, data_root, ...)``: a Runner for the tiny
    training config; ``edit(cfg)`` may change it first."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    def build(tmp_path, data_root, lr=1e-3, max_iters=4, max_keep=-1,
              interval=2, edit=None):
        work_dir = tmp_path / 'work'
        path = tmp_path / 'tiny.py'
        path.write_text(TINY_CONFIG.format(
            repo=repo_root, tiny=tiny_config, data_root=data_root, lr=lr,
            max_iters=max_iters, max_keep=max_keep, interval=interval,
            work_dir=work_dir))
        cfg = Config.fromfile(str(path))
        if edit is not None:
            edit(cfg)
        return Runner.from_cfg(cfg), work_dir

    return build


# ---------------------------------------------------------------------------
# atomic files
# ---------------------------------------------------------------------------

def test_atomic_write_replaces_whole_file_and_removes_stale_temporaries(
        tmp_path):
    target = tmp_path / 'iter_4.pth'
    stale = tmp_path / '.iter_4.pth.999999.tmp'
    stale.write_bytes(b'half a checkpoint from a killed run')
    atomic_write_bytes(b'first', target)
    assert target.read_bytes() == b'first'
    assert not stale.exists()
    atomic_write_bytes(b'second', target)
    assert target.read_bytes() == b'second'
    assert sorted(os.listdir(tmp_path)) == ['iter_4.pth']


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path):
    target = tmp_path / 'last_checkpoint'
    target.write_text('old')
    # the kernel's /dev/full answers every write with ENOSPC
    os.symlink('/dev/full', temporary_path(target))
    with pytest.raises(OSError) as info:
        atomic_write_bytes(b'new' * 1000, target)
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['last_checkpoint']


def _save(obj, path):
    torch.save(obj, path)
    return path


def test_is_complete_checkpoint_rejects_truncated_files(tmp_path):
    whole = _save({'state_dict': {'w': torch.arange(1000.)}},
                  tmp_path / 'iter_2.pth')
    data = whole.read_bytes()
    cut = tmp_path / 'iter_4.pth'
    cut.write_bytes(data[:len(data) // 2])
    assert is_complete_checkpoint(whole)
    assert not is_complete_checkpoint(cut)
    assert not is_complete_checkpoint(tmp_path / 'missing.pth')
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(cut)


def test_find_resume_checkpoint_picks_the_newest_complete_one(tmp_path):
    assert find_resume_checkpoint(tmp_path) is None
    for step in (2, 4, 10):
        _save({'w': torch.full((10,), float(step))},
              tmp_path / f'iter_{step}.pth')
    pointer = tmp_path / 'last_checkpoint'
    # a temporary file is never chosen, even the newest
    (tmp_path / '.iter_12.pth.4242.tmp').write_bytes(b'PK partial')
    # a pointer one save behind (killed between the save and its update):
    # the newer complete checkpoint wins
    pointer.write_text(str(tmp_path / 'iter_4.pth'))
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
    pointer.write_text(str(tmp_path / 'iter_10.pth'))
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
    # pointer to a truncated file: the newest complete checkpoint instead
    data = (tmp_path / 'iter_10.pth').read_bytes()
    (tmp_path / 'iter_12.pth').write_bytes(data[:100])
    pointer.write_text(str(tmp_path / 'iter_12.pth'))
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
    pointer.write_text('')  # killed while rewriting the pointer
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
    pointer.unlink()
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')


# ---------------------------------------------------------------------------
# random states
# ---------------------------------------------------------------------------

def _draws():
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(),
            np.random.randn(), torch.rand(3).tolist())


def test_random_state_survives_a_weights_only_round_trip(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian in Python's state
    np.random.randn()  # and in numpy's
    state = capture_random_state()
    expected = _draws()
    path = _save({RANDOM_STATE_KEY: state_to_plain(state)},
                 tmp_path / 'rng.pth')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        str(path)) == []
    loaded = torch.load(path, weights_only=True)[RANDOM_STATE_KEY]
    _draws()  # move every generator on
    restore_random_state(state_from_plain(loaded))
    assert _draws() == expected


# ---------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------

def test_full_disk_keeps_the_last_checkpoint_with_max_keep_ckpts(
        tmp_path, ade_48x48, build_runner):
    runner, work = build_runner(tmp_path, ade_48x48, max_iters=4, max_keep=1)
    work.mkdir(parents=True, exist_ok=True)
    os.symlink('/dev/full', temporary_path(work / 'iter_4.pth'))
    with pytest.raises(CheckpointSaveError) as info:
        runner.train()
    message = str(info.value)
    assert (f'could not save checkpoint {work / "iter_4.pth"}: the disk is '
            'full') in message
    assert f'the last complete checkpoint is kept: {work / "iter_2.pth"}' \
        in message
    # mmengine's CheckpointHook deletes iter_2 before writing iter_4
    assert is_complete_checkpoint(work / 'iter_2.pth')
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')
    assert sorted(p for p in os.listdir(work) if p.endswith(('.pth', '.tmp'))
                  ) == ['iter_2.pth']


def test_max_keep_ckpts_removes_the_oldest_after_the_new_one(
        tmp_path, ade_48x48, build_runner):
    runner, work = build_runner(tmp_path, ade_48x48, max_iters=6, max_keep=2)
    runner.train()
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == [
        'iter_4.pth', 'iter_6.pth']
    assert find_resume_checkpoint(work) == str(work / 'iter_6.pth')
    checkpoint = torch.load(work / 'iter_6.pth', weights_only=True)
    assert checkpoint['message_hub']['runtime_info']['keep_ckpt_ids'] == [4, 6]
    assert set(checkpoint[RANDOM_STATE_KEY]) == {'python', 'numpy', 'torch',
                                                'cuda'}


def test_overflowing_update_is_never_saved(tmp_path, ade_48x48, build_runner):
    # A finite loss whose SGD step overflows float32: the loss of iteration 1
    # is about 1e10, its gradients times lr 3e38 are not representable.
    def blow_up(cfg):
        cfg.model.decode_head.loss_decode.loss_weight = 1e10
        cfg.optim_wrapper.optimizer = dict(type='SGD', lr=3e38, weight_decay=0)

    runner, work = build_runner(tmp_path, ade_48x48, max_iters=2, interval=1,
                                edit=blow_up)
    with pytest.raises(NonFiniteWeightsError) as info:
        runner.train()
    assert str(info.value).startswith(
        'refusing to save a checkpoint at iteration 1: weight backbone.')
    assert 'The last checkpoint, none (no checkpoint yet), is kept' in str(
        info.value)
    assert not [p for p in os.listdir(work) if p.endswith(('.pth', '.tmp'))]
    assert not (work / 'last_checkpoint').exists()



# ---------------------------------------------------------------------------
# config arguments
# ---------------------------------------------------------------------------

def test_every_shipped_config_passes_the_argument_check(repo_root):
    import glob

    from mmengine.config import Config

    from convseg.engine.config_checks import check_model_config

    paths = sorted(glob.glob(os.path.join(repo_root, 'configs', '*.py')))
    assert len(paths) >= 10
    for path in paths:
        check_model_config(Config.fromfile(path).model)


@pytest.mark.parametrize('key, value, expected', [
    ('decode_head.pool_scale', (1, 2),
     "model.decode_head.pool_scale: UPerHead has no argument 'pool_scale'. "
     "Did you mean 'pool_scales'? It accepts: pool_scales, in_channels, "
     'channels, num_classes, '),
    ('auxiliary_head.loss_decode.weight', 0.4,
     'model.auxiliary_head.loss_decode.weight: CrossEntropyLoss has no '
     "argument 'weight'. Did you mean 'loss_weight'? It accepts: "
     'use_sigmoid, use_mask, reduction, class_weight, loss_weight, '),
    ('backbone.stochastic_depth', 0.1,
     "model.backbone.stochastic_depth: ConvNeXt has no argument "
     "'stochastic_depth'. It accepts: arch, in_channels, depths, dims, "
     'drop_path_rate, '),
])
def test_unknown_model_arguments_are_named(key, value, expected, repo_root):
    from mmengine.config import Config

    from convseg.engine.config_checks import (ConfigArgumentError,
                                              check_model_config)

    cfg = Config.fromfile(os.path.join(repo_root, 'configs',
                                       'upernet_convnext_t_ade20k.py'))
    cfg.merge_from_dict({f'model.{key}': value})
    with pytest.raises(ConfigArgumentError) as info:
        check_model_config(cfg.model)
    assert str(info.value).startswith(expected)


# ---------------------------------------------------------------------------
# the best checkpoint survives a failed save of the next best
# ---------------------------------------------------------------------------

def test_save_best_keeps_the_old_best_until_the_new_one_is_complete(
        tmp_path, ade_48x48, build_runner):
    def best_miou(cfg):
        cfg.default_hooks.checkpoint.update(save_best='mIoU', rule='greater')

    runner, work = build_runner(tmp_path, ade_48x48, max_iters=1, interval=1,
                                edit=best_miou)
    runner.train()
    hook = next(h for h in runner.hooks
                if isinstance(h, AtomicCheckpointHook))
    hook._save_best_checkpoint(runner, {'mIoU': 10.0})
    first = work / 'best_mIoU_iter_1.pth'
    second = work / 'best_mIoU_iter_2.pth'
    assert is_complete_checkpoint(first)
    runner.train_loop._iter = 2  # a better score one iteration later
    os.symlink('/dev/full', temporary_path(second))  # its save fails
    with pytest.raises(CheckpointSaveError) as info:
        hook._save_best_checkpoint(runner, {'mIoU': 20.0})
    assert info.value.errno == errno.ENOSPC
    assert is_complete_checkpoint(first)
    assert not second.exists()
    hook._save_best_checkpoint(runner, {'mIoU': 30.0})
    assert is_complete_checkpoint(second)
    assert not first.exists()
    assert sorted(p for p in os.listdir(work) if p.endswith(('.pth', '.tmp'))
                  ) == ['best_mIoU_iter_2.pth', 'iter_1.pth', 'iter_2.pth']


# ---------------------------------------------------------------------------
# load_from with another family's checkpoint
# ---------------------------------------------------------------------------

def _openmmlab_names(state):
    """convseg's ConvNeXt keys spelled as mmseg's own ConvNeXt spells them."""
    names = {'.dwconv.': '.depthwise_conv.', '.pwconv1.': '.pointwise_conv1.',
             '.pwconv2.': '.pointwise_conv2.'}
    renamed = {}
    for key, value in state.items():
        for ours, theirs in names.items():
            key = key.replace(ours, theirs)
        renamed[key] = value
    return renamed


def test_load_from_maps_an_openmmlab_segmentation_checkpoint(
        tmp_path, ade_48x48, build_runner):
    runner, _ = build_runner(tmp_path, ade_48x48)
    generator = torch.Generator().manual_seed(5)
    trained = {k: v + torch.randn(v.shape, generator=generator)
               if v.is_floating_point() else v
               for k, v in runner.model.state_dict().items()}
    source = tmp_path / 'upernet_convnext_mmseg.pth'
    foreign = _openmmlab_names(trained)
    assert 'backbone.stages.0.0.depthwise_conv.weight' in foreign
    torch.save({'state_dict': foreign, 'meta': {}}, source)
    runner, _ = build_runner(tmp_path, ade_48x48,
                             edit=lambda cfg: setattr(cfg, 'load_from',
                                                      str(source)))
    runner.load_or_resume()
    loaded = runner.model.state_dict()
    assert list(loaded) == list(trained)
    assert [k for k in trained if not torch.equal(loaded[k], trained[k])
            ] == []


def test_load_from_a_backbone_checkpoint_names_family_and_remedy(
        tmp_path, ade_48x48, build_runner):
    runner, _ = build_runner(tmp_path, ade_48x48)
    backbone = {k[len('backbone.'):]: v
                for k, v in runner.model.state_dict().items()
                if k.startswith('backbone.')}
    source = tmp_path / 'convnext_in1k.pth'
    torch.save({'model': _openmmlab_names(backbone)}, source)
    runner, _ = build_runner(tmp_path, ade_48x48,
                             edit=lambda cfg: setattr(cfg, 'load_from',
                                                      str(source)))
    with pytest.raises(CheckpointFormatError) as info:
        runner.load_or_resume()
    assert str(info.value) == (
        f'checkpoint {source} holds a ConvNeXt backbone of the openmmlab '
        'family (keys like backbone.downsample_layers.0.0.weight, '
        'backbone.stages.0.0.depthwise_conv.weight, head.fc.weight) and no '
        'segmentation heads, so it cannot be loaded as a whole model '
        '(load_from). Start from it through the backbone instead: '
        "model.backbone.init_cfg=dict(type='Pretrained', "
        f"checkpoint='{source}') with load_from=None; "
        'tools/convert_checkpoint.py (--from openmmlab) writes it with '
        "convseg's key names.")
