"""Fixtures for the hook tests, which run mmengine's Runner on the project's
configs with a tiny ConvNeXt UPerNet and a generated ADE20K-layout dataset.

- ``ade_48x48``: a tiny ADE20K-layout dataset (4 training images).
- ``build_runner``: ``build_runner(tmp_path, data_root, ...)`` builds a Runner
  for the tiny training config (``tiny_train_config`` of tests/conftest.py)
  with the convseg hooks these tests use.
"""
import pytest


@pytest.fixture(scope='module')
def ade_48x48(dataset):
    return dataset('ade20k', num_train=4, num_val=1, size=(48, 48))


@pytest.fixture
def build_runner(tiny_train_config):
    """``build_runner(tmp_path, data_root, ...)``: a Runner for the tiny
    training config; ``edit(cfg)`` may change it first."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    def build(tmp_path, data_root, lr=1e-3, max_iters=4, max_keep=-1,
              interval=2, edit=None):
        work_dir = tmp_path / 'work'
        path = tiny_train_config(
            tmp_path / 'tiny.py', data_root,
            test_dataloader=None, test_cfg=None, test_evaluator=None,
            optim_wrapper=dict(optimizer=dict(lr=lr)), param_scheduler=[],
            train_cfg=dict(max_iters=max_iters),
            default_hooks=dict(checkpoint=dict(
                type='AtomicCheckpointHook', interval=interval,
                max_keep_ckpts=max_keep)),
            custom_hooks=[dict(type='RandomStateHook'),
                          dict(type='NonFiniteCheckHook'),
                          dict(type='CheckpointMatchHook')],
            work_dir=str(work_dir))
        cfg = Config.fromfile(str(path))
        # mmengine names a run's MessageHub after the config and the second:
        # two runs within a second (the previous test's) would share one,
        # and with it the previous run's checkpoint ids
        cfg.experiment_name = f'tiny_{tmp_path.name}'
        if edit is not None:
            edit(cfg)
        return Runner.from_cfg(cfg), work_dir

    return build
