"""fit_to_device: what changes in a GPU recipe on a machine without CUDA."""
import pytest
import torch
from mmengine.config import Config

import convseg  # noqa: F401
from convseg.engine.launch import LaunchError, fit_to_device
from convseg.engine.hooks import LrLoggerHook

#: fit_to_device changes a recipe only where CUDA is missing
without_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason='the CPU fallbacks apply without CUDA')

CONFIG = 'configs/upernet_convnext_t_ade20k.py'


@without_cuda
def test_amp_becomes_fp32_and_sync_bn_stays_on_one_process(repo_root):
    cfg = Config.fromfile(repo_root / CONFIG)
    cfg.launcher = 'none'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    fit_to_device(cfg)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert cfg.optim_wrapper.constructor == \
        'LayerDecayOptimWrapperConstructor'
    # one process: mmengine's Runner reverts SyncBN itself
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert 'model_wrapper_cfg' not in cfg


@without_cuda
def test_slurm_without_gpus_is_refused(repo_root):
    cfg = Config.fromfile(repo_root / CONFIG)
    cfg.launcher = 'slurm'
    with pytest.raises(LaunchError) as err:
        fit_to_device(cfg)
    assert str(err.value) == (
        '--launcher slurm needs CUDA GPUs, and this machine has none. On '
        'CPU, start the processes with torchrun and --launcher pytorch '
        '(tools/dist_train.sh).')


def test_lr_logger_names_must_end_in_lr():
    with pytest.raises(ValueError) as err:
        LrLoggerHook(groups={'head': ('decode_head.', )})
    assert str(err.value) == (
        'LrLoggerHook log names must end in "lr" so that the log line shows '
        "them with the learning rates; got 'head'.")
