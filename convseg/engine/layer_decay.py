"""Layer-wise learning-rate decay, asking the backbone for each parameter's depth.

The optimizer of the ConvNeXt segmentation recipe gives every parameter a
layer id and scales the learning rate by ``decay_rate ** (num_layers + 1 -
id)``, so the heads train at the full rate and the stem at the smallest.
:class:`LayerDecayOptimWrapperConstructor` reproduces that rule, on top of
mmengine's standard ``paramwise_cfg`` options, for two kinds of backbone:

* convseg's contract, ``get_layer_id(param_name, num_layers, decay_type)``
  (see :class:`convseg.models.ConvNeXt`);
* mmpretrain's, ``get_layer_depth(param_name, prefix) -> (layer_id,
  max_layer_id)`` (its ViT, Swin, ConvNeXt...), with mmpretrain's rule
  ``decay_rate ** (max_layer_id - 1 - layer_id)``.
"""
from __future__ import annotations

import contextlib
import logging
from numbers import Real
from collections.abc import Iterator
from typing import Any

import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmseg.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                            OPTIMIZERS)

DECAY_TYPES = ('stage_wise', 'layer_wise')

#: the paramwise_cfg keys this constructor reads; every other key is one of
#: mmengine's standard options (custom_keys, bias_lr_mult, ...).
LAYER_DECAY_KEYS = ('decay_rate', 'decay_type', 'num_layers')
#: the keys that only convseg's get_layer_id contract needs
CONVSEG_RULE_KEYS = ('decay_type', 'num_layers')
PREFIX = 'backbone.'

#: parameter-name endings that get no weight decay whatever their shape: biases
#: and ConvNeXt-V2's GRN ``gamma``/``beta``, which are stored as (1, 1, 1, C).
NO_DECAY_SUFFIXES = ('.bias', '.gamma', '.beta')

_EXAMPLE = ("paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', "
            'num_layers=6)')
_ALLOWED = {
    'decay_rate': 'a number in (0, 1]',
    'decay_type': ' or '.join(repr(t) for t in DECAY_TYPES),
    'num_layers': 'an integer >= 1',
}


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optim-wrapper constructor with the official layer-wise LR decay.

    Use it as::

        optim_wrapper = dict(
            type='OptimWrapper',  # or 'AmpOptimWrapper'
            optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                           weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise',
                               num_layers=6))

    With N = ``num_layers``, parameters of ``model.backbone`` get the id that
    ``model.backbone.get_layer_id(name, N, decay_type)`` returns (``name``
    relative to the backbone, in 0..N+1); every other parameter (heads, necks)
    gets N + 1. A parameter of id ``i`` trains at
    ``lr * decay_rate ** (N + 1 - i)``. A backbone with mmpretrain's
    ``get_layer_depth(name, prefix='backbone.')`` instead is asked for every
    parameter of the model (``name`` with its ``backbone.`` prefix, as
    mmpretrain's own constructor asks), and a parameter of id ``i`` out of
    ``max_id`` trains at ``lr * decay_rate ** (max_id - 1 - i)``; such a
    backbone needs only ``decay_rate``. Its weight decay is 0 if it is 1-D or
    its name ends in ``.bias`` (the official rule), or ``.gamma``/``.beta``
    (ConvNeXt-V2's GRN, as in ConvNeXt-V2's own recipe); otherwise the
    optimizer's ``weight_decay``.

    ``num_layers`` is a setting, not a count of the backbone's layers: for
    ConvNeXt ``stage_wise`` gives ids 0..4 to the stem and the four stages
    whatever N is, so N only sets how far below the heads the backbone sits.
    The published recipes use N = 6 for ConvNeXt-T and N = 12 for the larger
    models; with N = 12 and ``stage_wise`` the whole backbone trains at
    0.9**13 .. 0.9**9 (0.25 .. 0.39) of the heads' rate. That is the
    published behaviour and is kept as is.

    mmengine's standard options (``custom_keys`` with ``lr_mult`` and
    ``decay_mult``, ``bias_lr_mult``, ``norm_decay_mult``, ...) apply first,
    with mmengine's semantics; the layer scale multiplies the resulting lr,
    and no-decay parameters keep weight decay 0. Frozen parameters
    (``requires_grad=False``) are left out. Parameters that share layer id,
    decay/no-decay, lr, weight decay and options share one param group (which
    also records its ``layer_id``), and the groups are logged once as a
    table. A model wrapped for distributed
    training (with a ``module`` attribute) is unwrapped first.

    Args:
        optim_wrapper_cfg: the ``optim_wrapper`` config without
            ``constructor`` and ``paramwise_cfg``; its optimizer must set
            ``lr`` and ``weight_decay``.
        paramwise_cfg: ``decay_rate`` in (0, 1], ``decay_type``
            (``'stage_wise'`` or ``'layer_wise'``) and ``num_layers`` (these
            two for ``get_layer_id`` backbones), plus any of mmengine's
            standard options.

    Raises:
        ValueError: a layer-decay key is missing or has a bad value, or the
            optimizer has no ``lr`` or ``weight_decay``; at build time,
            ``decay_type``/``num_layers`` are missing for a ``get_layer_id``
            backbone, ``num_layers`` is below its ``min_num_layers``, or a
            hook returns an id out of range.
        TypeError: at build time, the model has no ``backbone`` or the
            backbone has neither hook.
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: dict | None = None) -> None:
        if paramwise_cfg is not None and not isinstance(paramwise_cfg, dict):
            raise TypeError('paramwise_cfg must be a dict with decay_rate, '
                            f'decay_type and num_layers, got {paramwise_cfg!r}')
        standard = dict(paramwise_cfg or {})
        if 'decay_rate' not in standard:
            _raise_missing([k for k in LAYER_DECAY_KEYS if k not in standard])
        self.decay_rate: float = standard.pop('decay_rate')
        self.decay_type: str | None = standard.pop('decay_type', None)
        self.num_layers: int | None = standard.pop('num_layers', None)
        _check_settings(self.decay_rate, self.decay_type, self.num_layers)
        super().__init__(optim_wrapper_cfg, standard)
        for key, value in (('lr', self.base_lr),
                           ('weight_decay', self.base_wd)):
            if value is None:
                raise ValueError(
                    f'optim_wrapper.optimizer has no {key!r}; '
                    'LayerDecayOptimWrapperConstructor scales lr per layer '
                    'and sets weight decay per group, so set both lr and '
                    'weight_decay (weight_decay=0 for none)')

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optim wrapper with one param group per layer id and decay."""
        if hasattr(model, 'module'):
            model = model.module
        backbone = self._backbone_with_hook(model)
        groups = self._param_groups(model, backbone)
        self._log_groups(model, backbone, groups)
        optimizer = OPTIMIZERS.build(dict(self.optimizer_cfg, params=groups))
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(
            wrapper_cfg, default_args=dict(optimizer=optimizer))

    def _backbone_with_hook(self, model: nn.Module) -> nn.Module:
        """Return ``model.backbone`` after checking its hook and num_layers."""
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, nn.Module):
            raise TypeError(
                'LayerDecayOptimWrapperConstructor needs a model with a '
                f'`backbone` submodule; {type(model).__name__} has none. Use '
                'the DefaultOptimWrapperConstructor for this model.')
        if _has_hook(backbone, 'get_layer_id'):
            missing = [k for k in CONVSEG_RULE_KEYS
                       if getattr(self, k) is None]
            if missing:
                _raise_missing(missing)
        elif _has_hook(backbone, 'get_layer_depth'):
            given = [k for k in CONVSEG_RULE_KEYS
                     if getattr(self, k) is not None]
            if given:
                print_log(
                    f'paramwise_cfg {" and ".join(given)} ignored: '
                    f'{type(backbone).__name__} gives its own layer ids '
                    "through mmpretrain's get_layer_depth",
                    logger='current', level=logging.WARNING)
            return backbone
        else:
            raise TypeError(
                f'{type(backbone).__name__} has neither get_layer_id('
                'param_name, num_layers, decay_type) (convseg\'s ConvNeXt) '
                'nor get_layer_depth(param_name, prefix) (mmpretrain\'s '
                'backbones), so LayerDecayOptimWrapperConstructor cannot give '
                'its parameters layer ids. Use a backbone that provides one '
                'or the DefaultOptimWrapperConstructor.')
        min_num_layers = getattr(backbone, 'min_num_layers', None)
        if callable(min_num_layers):
            minimum = min_num_layers(self.decay_type)
            if self.num_layers < minimum:
                raise ValueError(
                    f'paramwise_cfg.num_layers={self.num_layers} is too small '
                    f'for {type(backbone).__name__} with decay_type='
                    f'{self.decay_type!r}: allowed values are integers >= '
                    f'{minimum}')
        return backbone

    def _layer_id(self, backbone: nn.Module, name: str) -> tuple[int, int]:
        """Layer id of parameter ``name`` (relative to the model) and the
        power of ``decay_rate`` its lr gets."""
        kind = type(backbone).__name__
        if not _has_hook(backbone, 'get_layer_id'):
            layer_id, max_id = backbone.get_layer_depth(name, prefix=PREFIX)
            if not 0 <= layer_id < max_id:
                raise ValueError(
                    f'{kind}.get_layer_depth({name!r}, prefix={PREFIX!r}) '
                    f'returned layer {layer_id} of {max_id}, outside '
                    f'0..{max_id - 1}')
            return layer_id, max_id - 1 - layer_id
        top = self.num_layers + 1
        if not name.startswith(PREFIX):
            return top, 0
        relative = name[len(PREFIX):]
        layer_id = backbone.get_layer_id(relative, self.num_layers,
                                         self.decay_type)
        if not 0 <= layer_id <= top:
            raise ValueError(
                f'{kind}.get_layer_id({relative!r}, {self.num_layers}, '
                f'{self.decay_type!r}) returned {layer_id}, outside 0..{top}; '
                'raise paramwise_cfg.num_layers')
        return layer_id, top - layer_id

    def _param_groups(self, model: nn.Module,
                      backbone: nn.Module) -> list[dict[str, Any]]:
        """Merge mmengine's per-tensor groups into layer-decay param groups.

        Returns the groups sorted by layer id, decay before no-decay, then
        lr; each has ``params``, ``lr``, ``weight_decay``, ``layer_id`` and
        the options of a matching ``custom_keys`` entry.
        """
        names = {id(param): name for name, param in model.named_parameters()}
        per_tensor: list[dict[str, Any]] = []
        # mmengine logs a line per frozen or custom-matched tensor; the table
        # logged afterwards reports the groups instead.
        with _muted(MMLogger.get_current_instance()):
            super().add_params(per_tensor, model)
        merged: dict[tuple, dict[str, Any]] = {}
        for entry in per_tensor:
            (param, ) = entry.pop('params')
            name = names[id(param)]
            layer_id, power = self._layer_id(backbone, name)
            no_decay = param.ndim == 1 or name.endswith(NO_DECAY_SUFFIXES)
            scale = self.decay_rate**power
            lr = entry.pop('lr', self.base_lr) * scale
            weight_decay = entry.pop('weight_decay', self.base_wd)
            if no_decay:
                weight_decay = 0.0
            key = (layer_id, no_decay, lr, weight_decay,
                   tuple(sorted((k, repr(v)) for k, v in entry.items())))
            if key not in merged:
                merged[key] = dict(
                    entry, params=[], lr=lr, weight_decay=weight_decay)
                merged[key]['layer_id'] = layer_id
            merged[key]['params'].append(param)
        order = sorted(merged, key=lambda key: key[:3])
        return [merged[key] for key in order]

    def _log_groups(self, model: nn.Module, backbone: nn.Module,
                    groups: list[dict[str, Any]]) -> None:
        """Log the param groups as one table."""
        rows = [('group', 'layer id', 'lr scale', 'weight decay', 'tensors',
                 'parameters')]
        for index, group in enumerate(groups):
            rows.append((str(index), str(group['layer_id']),
                         f'{group["lr"] / self.base_lr:.4g}',
                         f'{group["weight_decay"]:.4g}',
                         str(len(group['params'])),
                         f'{sum(p.numel() for p in group["params"]):,}'))
        frozen = [p for p in model.parameters() if not p.requires_grad]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        rule = (f'{self.decay_type}, decay_rate={self.decay_rate}, '
                f'num_layers={self.num_layers}'
                if _has_hook(backbone, 'get_layer_id') else
                f'{type(backbone).__name__}.get_layer_depth, decay_rate='
                f'{self.decay_rate}')
        lines = [
            f'Layer-wise lr decay ({rule}): {len(groups)} param groups, lr '
            f'scale relative to lr={self.base_lr:g}'
        ]
        lines += [
            '  '.join(cell.rjust(width) for cell, width in zip(row, widths))
            for row in rows
        ]
        lines.append(f'frozen (left out): {len(frozen)} tensors, '
                     f'{sum(p.numel() for p in frozen):,} parameters')
        print_log('\n'.join(lines), logger='current', level=logging.INFO)


def _has_hook(backbone: nn.Module, name: str) -> bool:
    return callable(getattr(backbone, name, None))


def _raise_missing(missing: list[str]) -> None:
    wanted = '; '.join(f'{key}: {_ALLOWED[key]}' for key in missing)
    raise ValueError(
        f'paramwise_cfg is missing {", ".join(map(repr, missing))} '
        f'({wanted}), which layer-wise lr decay needs; for example '
        f'{_EXAMPLE}')


def _check_settings(decay_rate: Any, decay_type: Any, num_layers: Any) -> None:
    """Raise ValueError naming the first layer-decay setting that is wrong
    (``decay_type`` and ``num_layers`` may be None: not given)."""
    if decay_type is not None and decay_type not in DECAY_TYPES:
        raise ValueError(f'paramwise_cfg.decay_type must be '
                         f'{_ALLOWED["decay_type"]}, got {decay_type!r}')
    if (not isinstance(decay_rate, Real) or isinstance(decay_rate, bool)
            or not 0 < decay_rate <= 1):
        raise ValueError(f'paramwise_cfg.decay_rate must be '
                         f'{_ALLOWED["decay_rate"]}, got {decay_rate!r}')
    if num_layers is not None and (
            not isinstance(num_layers, int) or isinstance(num_layers, bool)
            or num_layers < 1):
        raise ValueError(f'paramwise_cfg.num_layers must be '
                         f'{_ALLOWED["num_layers"]}, got {num_layers!r}')


@contextlib.contextmanager
def _muted(logger: logging.Logger) -> Iterator[None]:
    """Drop every record sent to ``logger`` inside the block."""

    def drop(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
