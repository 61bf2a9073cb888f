"""Loading checkpoints into models: fit checks, class counts, loaders.

:func:`load_backbone_weights` (what ``init_cfg=dict(type='Pretrained')``
runs) and :func:`load_segmentor_checkpoint` read a checkpoint of any family
(:mod:`convseg.checkpoint_reading`), map its keys
(:mod:`convseg.models.convnext_keymaps`), check that it fits the model
(architecture, shapes, number of classes) and load it, logging what was
left out.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..checkpoint_reading import extract_state_dict, read_checkpoint
from ..errors import CheckpointFormatError, CheckpointMismatchError
from .convnext_archs import arch_settings
from .convnext_keymaps import _first_keys, convert, is_segmentor_state_dict

Checkpoint = str | os.PathLike | Mapping[str, Any]


@dataclass(frozen=True)
class ArchSignature:
    """What a ConvNeXt state dict says about its architecture."""

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    use_grn: bool
    layer_scale: bool

    def arch_name(self) -> str | None:
        """The name in the arch table with these depths and dims, if any."""
        for name, (depths, width) in arch_settings.items():
            dims = tuple(width * 2**i for i in range(4))
            if (tuple(depths), dims) == (self.depths, self.dims):
                return name
        return None

    def describe(self) -> str:
        """E.g. ``ConvNeXt-tiny (depths (3, 3, 9, 3), dims (...), ...)``."""
        version = 'ConvNeXt V2' if self.use_grn else 'ConvNeXt'
        name = self.arch_name()
        title = f'{version}-{name}' if name else f'an unnamed {version}'
        grn = 'GRN' if self.use_grn else 'no GRN'
        scale = 'layer scale' if self.layer_scale else 'no layer scale'
        return (f'{title} (depths {self.depths}, dims {self.dims}, {grn}, '
                f'{scale})')


def infer_arch(state_dict: Mapping[str, torch.Tensor],
               prefix: str = '') -> ArchSignature | None:
    """Depths, dims, GRN and layer scale of a state dict with convseg names.

    Looks at keys under ``prefix`` (e.g. ``'backbone.'``); returns ``None``
    when there are no ``stages.{i}.{j}.dwconv.weight`` keys.
    """
    block = re.compile(re.escape(prefix) + r'stages\.(\d+)\.(\d+)\.(.+)$')
    depths = [0, 0, 0, 0]
    dims = [0, 0, 0, 0]
    use_grn = layer_scale = False
    for key, value in state_dict.items():
        found = block.match(key)
        if not found or int(found.group(1)) > 3:
            continue
        stage, index, name = (int(found.group(1)), int(found.group(2)),
                              found.group(3))
        depths[stage] = max(depths[stage], index + 1)
        if name == 'dwconv.weight':
            dims[stage] = int(value.shape[0])
        use_grn |= name.startswith('grn.')
        layer_scale |= name == 'gamma'
    if not any(depths):
        return None
    return ArchSignature(tuple(depths), tuple(dims), use_grn, layer_scale)


def _arch_hint(ckpt: ArchSignature, model: ArchSignature) -> str:
    hints = []
    if (ckpt.depths, ckpt.dims) != (model.depths, model.dims):
        name = ckpt.arch_name()
        hints.append(f"arch='{name}'" if name else
                     f'depths={ckpt.depths}, dims={ckpt.dims}')
    if ckpt.use_grn != model.use_grn:
        hints.append(f'use_grn={ckpt.use_grn}')
    if ckpt.layer_scale != model.layer_scale:
        hints.append('layer_scale_init_value=1e-6' if ckpt.layer_scale else
                     'layer_scale_init_value=0')
    return ', '.join(hints)


def check_fits(state_dict: Mapping[str, torch.Tensor],
               model_state: Mapping[str, torch.Tensor],
               sources: Mapping[str, str],
               source: str,
               prefix: str = '') -> None:
    """Raise :class:`CheckpointMismatchError` if the weights cannot fit.

    First the architecture (depths, dims, GRN, layer scale) of the keys under
    ``prefix``, then the shape of every key both have.
    """
    ckpt = infer_arch(state_dict, prefix)
    model = infer_arch(model_state, prefix)
    if ckpt is not None and model is not None and ckpt != model:
        raise CheckpointMismatchError(
            f'checkpoint {source} looks like {ckpt.describe()}, but the model '
            f'is {model.describe()}. Build the backbone to match the '
            f'checkpoint ({_arch_hint(ckpt, model)}) or use a checkpoint made '
            'for this model.')
    for key, value in state_dict.items():
        if key in model_state and value.shape != model_state[key].shape:
            origin = sources.get(key, key)
            named = (key if origin == key else
                     f'{key} (checkpoint key {origin})')
            raise CheckpointMismatchError(
                f'checkpoint {source}: {named} has shape '
                f'{tuple(value.shape)} in the checkpoint but '
                f'{tuple(model_state[key].shape)} in the model. Check that '
                'the config matches the checkpoint (in_channels, num_classes, '
                'channels).')


def dataset_meta_from(meta: Mapping[str, Any] | None) -> dict | None:
    """``{'classes': tuple, 'palette': list}`` from a checkpoint's meta.

    Takes mmseg 1.x's ``meta['dataset_meta']`` or mmseg 0.x's
    ``meta['CLASSES']`` / ``meta['PALETTE']``; ``None`` when it has neither.
    """
    if not isinstance(meta, Mapping):
        return None
    found = meta.get('dataset_meta')
    if isinstance(found, Mapping) and 'classes' in found:
        result = dict(found)
    elif meta.get('CLASSES') is not None:
        result = {'classes': meta['CLASSES'], 'palette': meta.get('PALETTE')}
    else:
        return None
    result['classes'] = tuple(str(c) for c in result['classes'])
    if result.get('palette') is not None:
        result['palette'] = [[int(v) for v in color]
                             for color in result['palette']]
    else:
        result.pop('palette', None)
    return result


def _source_name(checkpoint: Checkpoint) -> str:
    return ('the given state dict' if isinstance(checkpoint, Mapping) else
            str(checkpoint))


def _short(keys: list[str], count: int = 6) -> str:
    return _first_keys(keys, count) if keys else 'none'


def _load_source(checkpoint: Checkpoint, map_location: Any) -> Any:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    return read_checkpoint(checkpoint, map_location)


def load_backbone_weights(backbone: nn.Module,
                          checkpoint: Checkpoint,
                          prefix: str | None = None) -> dict:
    """Load pretrained weights of any supported family into ``backbone``.

    ``checkpoint`` is a path, URL, HuggingFace model directory or an already
    loaded checkpoint. ``prefix`` (e.g. ``'backbone.'``) selects and strips
    the keys under it; without it a whole segmentation checkpoint gives its
    ``backbone.*`` keys. Raises :class:`CheckpointMismatchError` for another
    arch or a shape mismatch. Logs a summary and returns it as a dict with
    ``family``, ``loaded`` (count), ``missing``, ``unexpected``,
    ``dropped`` (classifier keys) and ``unused`` (segmentation head keys).
    """
    source = _source_name(checkpoint)
    state = extract_state_dict(_load_source(checkpoint, 'cpu'), source)
    unused: list[str] = []
    if prefix:
        selected = {k[len(prefix):]: v for k, v in state.items()
                    if k.startswith(prefix)}
        if not selected:
            raise CheckpointFormatError(
                f'no key of {source} starts with prefix {prefix!r}; its first '
                f'keys are: {_first_keys(list(state))}.')
        state = selected
    elif is_segmentor_state_dict(state):
        unused = [k for k in state if not k.startswith('backbone.')]
        state = {k[len('backbone.'):]: v for k, v in state.items()
                 if k.startswith('backbone.')}
    result = convert(state, 'auto', source)
    model_state = backbone.state_dict()
    check_fits(result.state_dict, model_state, result.sources, source)
    outcome = backbone.load_state_dict(result.state_dict, strict=False)
    output_norms = re.compile(r'norm[0-3]\.')
    summary = {
        'family': result.family,
        'loaded': len(result.state_dict) - len(outcome.unexpected_keys),
        'missing': list(outcome.missing_keys),
        'unexpected': list(outcome.unexpected_keys),
        'dropped': result.dropped,
        'unused': unused,
    }
    new_norms = [k for k in summary['missing'] if output_norms.match(k)]
    missing = [k for k in summary['missing'] if k not in new_norms]
    lines = [
        f'Loaded ConvNeXt weights from {source} (family {result.family}): '
        f'{summary["loaded"]} tensors.',
        f'  dropped classifier keys: {_short(result.dropped)}',
        f'  output norms not in the checkpoint, left at their '
        f'initialisation: {_short(new_norms)}',
        f'  missing keys: {_short(missing)}',
        f'  unexpected keys: {_short(summary["unexpected"])}',
    ]
    if unused:
        lines.append(f'  segmentation head keys not used by the backbone: '
                     f'{len(unused)}')
    level = logging.WARNING if missing or summary['unexpected'] else \
        logging.INFO
    print_log('\n'.join(lines), logger='current', level=level)
    return summary


_CLASSIFIER = re.compile(r'^((?:decode_head|auxiliary_head)(?:\.\d+)?)'
                         r'\.conv_seg\.weight$')


def check_num_classes(state_dict: Mapping[str, torch.Tensor],
                      model_state: Mapping[str, torch.Tensor],
                      source: str) -> None:
    """Raise if a head's classifier has another number of classes.

    Compares ``<head>.conv_seg.weight`` (shape ``(num_classes, C, 1, 1)``) of
    the decode and auxiliary heads.
    """
    for key, value in state_dict.items():
        found = _CLASSIFIER.match(key)
        if not found or key not in model_state:
            continue
        ckpt_classes = int(value.shape[0])
        model_classes = int(model_state[key].shape[0])
        if ckpt_classes != model_classes:
            head = found.group(1)
            raise CheckpointMismatchError(
                f'checkpoint {source} was trained for {ckpt_classes} classes '
                f'({key} has {ckpt_classes} outputs), but the model\'s {head} '
                f'has num_classes={model_classes}. Set '
                f'model.{head}.num_classes={ckpt_classes} (with the dataset '
                f'the checkpoint was trained on), or start from its backbone '
                f'only: model.backbone.init_cfg=dict(type=\'Pretrained\', '
                f'prefix=\'backbone.\', checkpoint=...).')


def check_complete(keys: Iterable[str], model_keys: Iterable[str],
                   source: str, strict: bool = False) -> None:
    """Raise :class:`CheckpointMismatchError` if a checkpoint with weights
    ``keys`` lacks some of the model's (``model_keys``), or with ``strict``
    also if it has weights the model lacks (what
    ``load_state_dict(strict=True)`` refuses, with a clearer message).
    """
    keys, model_keys = list(keys), list(model_keys)
    present, wanted = set(keys), set(model_keys)
    missing = [k for k in model_keys if k not in present]
    if missing:
        raise CheckpointMismatchError(
            f'checkpoint {source} lacks {len(missing)} weights of the model: '
            f'{_first_keys(missing)}. Check that the config matches the '
            'checkpoint (heads, auxiliary head, arch).')
    unexpected = [k for k in keys if k not in wanted]
    if strict and unexpected:
        raise CheckpointMismatchError(
            f'checkpoint {source} has {len(unexpected)} weights the model '
            f'lacks: {_first_keys(unexpected)}. Check that the config '
            'matches the checkpoint (backbone, heads, auxiliary head).')


def load_segmentor_checkpoint(model: nn.Module,
                              checkpoint: Checkpoint,
                              map_location: Any = 'cpu') -> dict:
    """Load a whole segmentation checkpoint of any supported family.

    ``model`` is an mmseg ``EncoderDecoder`` (backbone convseg's ConvNeXt);
    ``checkpoint`` a path, URL or loaded checkpoint in mmseg 0.x or 1.x
    format, with Facebook's (official) or OpenMMLab's backbone names. Sets
    ``model.dataset_meta`` (``classes``, ``palette``) from the checkpoint's
    meta. Raises :class:`CheckpointMismatchError` for another arch, a shape
    mismatch or model keys the checkpoint lacks; logs unexpected keys.
    Returns the checkpoint as loaded.
    """
    source = _source_name(checkpoint)
    raw = _load_source(checkpoint, map_location)
    state = extract_state_dict(raw, source)
    if not is_segmentor_state_dict(state):
        raise CheckpointFormatError(
            f'{source} is not a whole segmentation checkpoint (no '
            f'decode_head.* keys; first keys: {_first_keys(list(state))}). '
            'Load backbone weights through the backbone\'s init_cfg '
            "(dict(type='Pretrained', checkpoint=...)) instead.")
    result = convert(state, 'auto', source)
    model_state = model.state_dict()
    check_num_classes(result.state_dict, model_state, source)
    check_fits(result.state_dict, model_state, result.sources, source,
               prefix='backbone.')
    check_complete(result.state_dict, model_state, source)
    outcome = model.load_state_dict(result.state_dict, strict=False)
    meta = raw.get('meta') if isinstance(raw, Mapping) else None
    dataset_meta = dataset_meta_from(meta)
    if dataset_meta is not None:
        model.dataset_meta = dataset_meta
    print_log(
        f'Loaded segmentation checkpoint {source} (backbone family '
        f'{result.family}): {len(result.state_dict)} tensors; unexpected '
        f'keys: {_short(list(outcome.unexpected_keys))}; classes: '
        f'{len(dataset_meta["classes"]) if dataset_meta else "not in meta"}',
        logger='current',
        level=logging.WARNING if outcome.unexpected_keys else logging.INFO)
    return raw
