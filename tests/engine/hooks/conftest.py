"""Fixtures for the hook tests, which run mmengine's Runner on the project's
configs with a tiny ConvNeXt UPerNet and a generated ADE20K-layout dataset.

- ``ade_48x48``: a tiny ADE20K-layout dataset (4 training images).
- ``build_runner``: ``build_runner(tmp_path, data_root, ...)`` builds a Runner
  for the tiny training config with the convseg hooks these tests use.
"""
import pytest

TINY_CONFIG = '''
_base_ = [
    '{tiny}',
    '{repo}/configs/_base_/datasets/ade20k.py',
    '{repo}/configs/_base_/default_runtime.py',
    '{repo}/configs/_base_/schedules/schedule_160k.py',
    '{repo}/configs/_base_/optimizers/adamw_layer_decay.py',
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
