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

``TrainSpeedHook`` (:mod:`convseg.engine.hooks`, in the custom hooks of
``configs/_base_/default_runtime.py``) reads them from the runner's config,
so they work wherever the runner is built: ``Runner.from_cfg(cfg).train()``,
mmseg's tools/train.py, convseg's. ``Runner.train()`` builds the optim
wrapper before the first hook runs, so the optimizer switches change the
built objects in place (:func:`use_fused_adamw`, :func:`use_bf16`) at
``before_run``; the model-side ones (:func:`to_channels_last`,
:func:`compile_backbone`) apply at ``before_train``, after a resume. A
switch that cannot work on this machine (fused kernels on a device without
them, bf16 on a GPU or CPU that only emulates it, bf16 without AMP on a
GPU) is left off with a warning naming why. Each change is logged.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from ..errors import ConvsegError
from ..hardware import cpu_has_native_bf16, cpu_model, cuda_has_native_bf16
from .cpu_autocast import CPUAutocastOptimWrapper

SWITCHES = ('channels_last', 'fused_adamw', 'bf16', 'compile_backbone')
FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)


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


def use_fused_adamw(optimizer: torch.optim.Optimizer, device: str) -> None:
    """Switch a built Adam/AdamW to torch's fused kernel, in place.

    What ``fused=True`` at construction sets: each param group's (and the
    defaults') ``fused``, no ``foreach``, and the flag that lets a
    ``GradScaler`` leave unscaling to the fused step. Anything else, or a
    device without the kernel, is left as it is with a warning.
    """
    name = type(optimizer).__name__
    if not isinstance(optimizer, FUSED_OPTIMIZERS):
        _log(f'train_speed.fused_adamw: the optimizer is {name!r}, not '
             'Adam/AdamW; left as it is', logging.WARNING)
    elif not fused_adamw_available(device):
        _log(f'train_speed.fused_adamw: torch {torch.__version__} has no '
             f'fused AdamW for {device}; using the default kernel',
             logging.WARNING)
    else:
        for group in [optimizer.defaults, *optimizer.param_groups]:
            group['fused'] = True
            group['foreach'] = None
        optimizer._step_supports_amp_scaling = True
        _log(f'train_speed: fused {name} on {device}')


def use_bf16(optim_wrapper: OptimWrapper, device: str) -> None:
    """Make a built optim wrapper autocast to bf16, in place.

    On a GPU, an ``AmpOptimWrapper`` casts to bf16 instead of fp16 (its
    ``cast_dtype``); on a CPU with native bf16, a plain ``OptimWrapper``
    becomes a :class:`CPUAutocastOptimWrapper`. In place, because the param
    schedulers that ``Runner.train()`` builds before any hook runs count
    the steps of this very wrapper. Anything else is left as it is with a
    warning.
    """
    kind = type(optim_wrapper).__name__
    if device not in ('cpu', 'cuda'):
        _log(f'train_speed.bf16: the model is on {device}; the switch knows '
             'CPU and CUDA only, so it trains as configured', logging.WARNING)
    elif device == 'cpu':
        if type(optim_wrapper) is not OptimWrapper:
            _log(f'train_speed.bf16: optim wrapper {kind!r} is left as it is '
                 '(CPU bf16 autocast replaces only OptimWrapper)',
                 logging.WARNING)
        elif not cpu_has_native_bf16():
            _log(f'train_speed.bf16: this CPU ({cpu_model()}) has no native '
                 'bf16 (avx512_bf16 or AMX); it trains in fp32',
                 logging.WARNING)
        else:
            CPUAutocastOptimWrapper.adopt(optim_wrapper)
            _log(f'train_speed: bf16 autocast on the CPU ({cpu_model()})')
    elif not isinstance(optim_wrapper, AmpOptimWrapper):
        _log(f'train_speed.bf16: the run has no mixed precision (optim '
             f'wrapper {kind!r}, not AmpOptimWrapper); it trains in fp32',
             logging.WARNING)
    elif not cuda_has_native_bf16():
        _log(f'train_speed.bf16: {torch.cuda.get_device_name(0)} has no '
             'native bf16 (a GPU of compute capability 8.0 or newer); AMP '
             'stays fp16', logging.WARNING)
    else:
        optim_wrapper.cast_dtype = torch.bfloat16
        _log('train_speed: AMP in bf16')


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
    'aot_eager', ...) or a dict of torch.compile arguments.

    Shapes are static unless ``options`` says ``dynamic``: a training crop
    does not change, and after the backbone's code had been compiled for
    another input size in the same process, torch 2.13's automatic dynamic
    shapes failed in inductor (``cannot determine truth value of
    Relational``); a new size compiles anew instead.
    """
    if isinstance(options, str):
        options = dict(backend=options)
    options = dict(options) if isinstance(options, dict) else {}
    options.setdefault('dynamic', False)
    model.backbone.compile(**options)
