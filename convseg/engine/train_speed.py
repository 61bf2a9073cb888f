"""Training speed switches, each off until measured on a GPU.

A config turns them on with a ``train_speed`` dict (every key optional,
all False by default)::

    train_speed = dict(
        channels_last=True,      # model and its gradients channels-last
        fused_adamw=True,        # torch's fused Adam/AdamW kernel
        bf16=True,               # AmpOptimWrapper autocasts to bf16, not
                                 # fp16; on CPU, CPUAutocastOptimWrapper
        compile_backbone=True)   # torch.compile the backbone; or a backend
                                 # name, or a dict of torch.compile arguments

``tools/train.py`` calls :func:`apply_train_speed` on the config before the
runner is built: it turns the switches into mmengine settings (the
optimizer's ``fused``, the optim wrapper's ``dtype``, or on a CPU with
native bf16 the wrapper ``CPUAutocastOptimWrapper``) and, for the model-side
ones, a ``TrainSpeedHook`` (:mod:`convseg.engine.hooks`) that calls
:func:`to_channels_last` and :func:`compile_backbone`. A switch that cannot
work on this machine (fused kernels on a device without them, bf16 on a GPU
or CPU that only emulates it, bf16 without AMP on a GPU) is left off with a
warning naming why. Each change is logged.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from convseg.errors import ConvsegError
from convseg.hardware import (cpu_has_native_bf16, cpu_model,
                              cuda_has_native_bf16)

SWITCHES = ('channels_last', 'fused_adamw', 'bf16', 'compile_backbone')
FUSED_OPTIMIZERS = ('Adam', 'AdamW')


class TrainSpeedConfigError(ConvsegError, ValueError):
    """A ``train_speed`` setting that is not one of the switches."""


def _log(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger='current', level=level)


def fused_adamw_available(device: str) -> bool:
    """True if torch has a fused AdamW kernel for ``device`` ('cpu',
    'cuda'), found by building one on a one-element tensor."""
    param = torch.zeros(1, device=device, requires_grad=True)
    try:
        torch.optim.AdamW([param], fused=True)
    except (RuntimeError, ValueError):
        return False
    return True


def read_switches(cfg: Config) -> dict[str, Any]:
    """The config's ``train_speed`` switches, every one present.

    Raises :class:`TrainSpeedConfigError` for an unknown key or a value of
    the wrong type.
    """
    given = cfg.get('train_speed') or {}
    unknown = sorted(set(given) - set(SWITCHES))
    if unknown:
        raise TrainSpeedConfigError(
            f'train_speed has no switch {", ".join(map(repr, unknown))}; '
            f'the switches are {", ".join(SWITCHES)}')
    switches = {name: given.get(name, False) for name in SWITCHES}
    for name, value in switches.items():
        allowed = (bool, str, dict) if name == 'compile_backbone' \
            else (bool, )
        if not isinstance(value, allowed):
            kinds = ('True, False, a torch.compile backend name or a dict of '
                     'torch.compile arguments') \
                if name == 'compile_backbone' else 'True or False'
            raise TrainSpeedConfigError(
                f'train_speed.{name} must be {kinds}, got {value!r}')
    return switches


def _apply_fused(cfg: Config, device: str) -> None:
    optimizer = cfg.optim_wrapper.optimizer
    if optimizer.get('type') not in FUSED_OPTIMIZERS:
        _log(f'train_speed.fused_adamw: the optimizer is '
             f'{optimizer.get("type")!r}, not Adam/AdamW; left as it is',
             logging.WARNING)
    elif not fused_adamw_available(device):
        _log(f'train_speed.fused_adamw: torch {torch.__version__} has no '
             f'fused AdamW for {device}; using the default kernel',
             logging.WARNING)
    else:
        optimizer.fused = True
        optimizer.pop('foreach', None)
        _log(f'train_speed: fused {optimizer.type} on {device}')


def _apply_cpu_bf16(cfg: Config) -> None:
    wrapper = cfg.optim_wrapper
    if wrapper.get('type') != 'OptimWrapper':
        _log(f'train_speed.bf16: optim wrapper {wrapper.get("type")!r} is '
             'left as it is (CPU bf16 autocast replaces only OptimWrapper)',
             logging.WARNING)
    elif not cpu_has_native_bf16():
        _log(f'train_speed.bf16: this CPU ({cpu_model()}) has no native bf16 '
             '(avx512_bf16 or AMX); it trains in fp32', logging.WARNING)
    else:
        wrapper.type = 'CPUAutocastOptimWrapper'
        _log(f'train_speed: bf16 autocast on the CPU ({cpu_model()})')


def _apply_bf16(cfg: Config) -> None:
    wrapper = cfg.optim_wrapper
    if wrapper.get('type') != 'AmpOptimWrapper':
        _log(f'train_speed.bf16: the run has no mixed precision (optim '
             f'wrapper {wrapper.get("type")!r}, not AmpOptimWrapper); it '
             'trains in fp32', logging.WARNING)
    elif not cuda_has_native_bf16():
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() \
            else 'this machine'
        _log(f'train_speed.bf16: {gpu} has no native bf16 (a GPU of compute '
             'capability 8.0 or newer); AMP stays fp16', logging.WARNING)
    else:
        wrapper.dtype = 'bfloat16'
        _log('train_speed: AMP in bf16')


def apply_train_speed(cfg: Config) -> None:
    """Turn ``cfg.train_speed`` into mmengine settings, in place.

    Call it after :func:`convseg.engine.fit_to_device` (which may have
    replaced AMP by fp32 on a machine without CUDA).
    """
    switches = read_switches(cfg)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if switches['fused_adamw']:
        _apply_fused(cfg, device)
    if switches['bf16']:
        (_apply_bf16 if device == 'cuda' else _apply_cpu_bf16)(cfg)
    if switches['channels_last'] or switches['compile_backbone']:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='TrainSpeedHook',
                 channels_last=switches['channels_last'],
                 compile_backbone=switches['compile_backbone'])
        ]


def to_channels_last(model: nn.Module,
                     optim_wrapper: OptimWrapper | None = None) -> int:
    """Store ``model``'s 4-D weights channels-last, and the optimizer state
    that belongs to them (e.g. AdamW's moments loaded by a resume) in the
    same layout. Returns the number of weights converted."""
    model.to(memory_format=torch.channels_last)
    weights = [p for p in model.parameters() if p.dim() == 4]
    if optim_wrapper is not None:
        state = optim_wrapper.optimizer.state
        for param in weights:
            for key, value in state.get(param, {}).items():
                if torch.is_tensor(value) and value.shape == param.shape:
                    # empty_like keeps the weight's exact strides
                    state[param][key] = torch.empty_like(
                        param, dtype=value.dtype).copy_(value)
    return len(weights)


def compile_backbone(model: nn.Module, options: bool | str | dict) -> None:
    """``torch.compile`` ``model.backbone`` in place (its state-dict keys do
    not change); ``options`` is True, a backend name ('inductor',
    'aot_eager', ...) or a dict of torch.compile arguments."""
    if isinstance(options, str):
        options = dict(backend=options)
    model.backbone.compile(**(options if isinstance(options, dict) else {}))
