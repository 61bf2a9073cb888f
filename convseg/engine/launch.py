"""Run the GPU recipes on machines without a GPU, saying what changes.

The released configs train with mixed precision, SyncBN in the heads and NCCL
data parallelism. None of these works without CUDA: mmengine's
``AmpOptimWrapper`` refuses to start, ``init_dist`` calls
``torch.cuda.set_device``, DDP rejects ``device_ids`` for CPU modules and
torch's ``SyncBatchNorm`` only synchronises GPU tensors. :func:`fit_to_device`
adapts a config in place so that the same command runs (e.g. a 2-process
gloo run on CPU with ``torchrun``), and logs each change.
:func:`finish_distributed` ends a tool's distributed run cleanly.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

from ..errors import ConvsegError


class LaunchError(ConvsegError, RuntimeError):
    """A launcher that cannot work on this machine."""


def _warn(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)


def _sync_bn_to_bn(node: Any) -> int:
    """Turn every ``type='SyncBN'`` dict under ``node`` into ``'BN'``."""
    changed = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            changed += 1
        for value in node.values():
            changed += _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed += _sync_bn_to_bn(value)
    return changed


def fit_to_device(cfg: Config) -> None:
    """Adapt ``cfg`` in place to a machine without CUDA; no-op with CUDA.

    - ``AmpOptimWrapper`` becomes ``OptimWrapper``: training runs in fp32.
    - With ``cfg.launcher == 'pytorch'`` (torchrun): the gloo process group
      is started here from torchrun's environment, the model is wrapped in
      DDP without device ids, and SyncBN layers of ``cfg.model`` become BN
      (statistics per process).

    Raises :class:`LaunchError` for ``cfg.launcher == 'slurm'``, whose
    process setup in mmengine needs GPUs.
    """
    if torch.cuda.is_available():
        return
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper and optim_wrapper.get('type') == 'AmpOptimWrapper':
        _warn('No CUDA GPU: mixed precision (AmpOptimWrapper) needs one; '
              'training in fp32 with OptimWrapper instead.')
        optim_wrapper.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            optim_wrapper.pop(key, None)

    launcher = cfg.get('launcher', 'none')
    if launcher == 'none':
        return
    if launcher != 'pytorch':
        raise LaunchError(
            f'--launcher {launcher} needs CUDA GPUs, and this machine has '
            'none. On CPU, start the processes with torchrun and --launcher '
            'pytorch (tools/dist_train.sh).')
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    cfg.model_wrapper_cfg = dict(
        type='MMDistributedDataParallel',
        device_ids=None,
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    if _sync_bn_to_bn(cfg.model):
        _warn(f'No CUDA GPU on rank {os.environ.get("RANK", "?")}: SyncBN '
              'only synchronises GPU tensors; using BN (batch statistics per '
              'process) in its place.')


def finish_distributed() -> None:
    """Leave the default process group at the end of a successful run.

    Call it in every process after the last collective (e.g. after
    ``runner.train()`` or ``runner.test()``); without a process group it does
    nothing. A barrier first lets every rank finish its last collective, then
    the group is destroyed while the interpreter is fully alive. Left to
    interpreter exit instead, the gloo backend's worker threads may drop the
    last reference to a tensor that still has a Python object after Python
    has begun to shut down; the thread then cannot take the GIL, is unwound
    through a ``noexcept`` destructor and the process aborts with
    "terminate called without an active exception" (SIGABRT) although its
    work was done. NCCL groups get the same order, which their
    ``destroy_process_group`` warning asks for.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    if torch_dist.get_backend() == 'nccl':
        torch_dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        torch_dist.barrier()
    torch_dist.destroy_process_group()
