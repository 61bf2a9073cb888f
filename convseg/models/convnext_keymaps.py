"""Key maps between ConvNeXt checkpoint families and convseg's names.

Pure data and one function (:func:`convert`); this module imports nothing
from the model, so the model and the loaders can both use it.

convseg's ConvNeXt uses the official key names
(``downsample_layers.{i}.{0,1}``,
``stages.{i}.{j}.{dwconv,norm,pwconv1,pwconv2,gamma,grn.gamma,grn.beta}``,
``norm{i}``). Checkpoints come in four families, each described by one entry
of :data:`FAMILIES` -- a table of key patterns, not code:

* ``facebook``: the official ConvNeXt V1/V2 releases (``{'model': ...}``),
  and the official UPerNet-ConvNeXt segmentation releases (``backbone.*``).
* ``openmmlab``: mmcls / mmpretrain (``backbone.`` prefix,
  ``depthwise_conv``, ``pointwise_conv{1,2}``) and mmseg's UPerNet-ConvNeXt.
* ``timm``: ``stem.{0,1}``, ``stages.N.downsample``, ``stages.N.blocks.M``.
* ``hf``: HuggingFace transformers ConvNext / ConvNextV2 (``embeddings``,
  ``encoder.stages.N.layers.M``), from ``.bin`` or ``.safetensors``.

Classifier keys are dropped, and only those: the classifier itself and the
final norm that precedes it (``norm.*`` in Facebook's checkpoints,
``head.norm.*`` in timm's, ``layernorm.*`` in HF's). OpenMMLab classifiers
name their final norm ``norm3``, the same name as convseg's last output norm,
and mmseg loads it there when it starts from those weights; convseg does the
same, so an OpenMMLab checkpoint gives the model mmseg's recipe starts from.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import CheckpointFormatError

StateDict = dict[str, torch.Tensor]

#: parts of a whole segmentation checkpoint that are not the backbone.
HEAD_PREFIXES = ('decode_head.', 'auxiliary_head.')

#: prefixes that wrappers (DistributedDataParallel) put before every key.
WRAPPER_PREFIXES = ('module.', )

_WB = r'(weight|bias)'


@dataclass(frozen=True)
class Family:
    """One checkpoint family as data.

    ``signature``: a key (after ``prefixes`` are stripped) matching this
    regex identifies the family. ``rules``: ``(pattern, template, fit)``;
    a key fully matching ``pattern`` becomes ``template`` (regex groups
    substituted), and ``fit`` names an entry of :data:`FITS` that reshapes the
    tensor to convseg's shape. ``classifier``: patterns of the classifier keys
    that are dropped. ``layout``: a few of its keys, for error messages.
    """

    name: str
    layout: str
    signature: str
    prefixes: tuple[str, ...]
    rules: tuple[tuple[str, str, str | None], ...]
    classifier: tuple[str, ...]


#: tensor reshapes that make a family's parameter fit convseg's module.
FITS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    # GRN gamma/beta: (C,) in mmpretrain and timm -> (1, 1, 1, C) official.
    'grn': lambda t: t.reshape(1, 1, 1, -1),
    # pointwise convs stored as 1x1 Conv2d (O, I, 1, 1) -> Linear (O, I).
    'linear': lambda t: t.flatten(1) if t.dim() == 4 else t,
}

_BLOCK = r'stages\.(\d+)\.(\d+)'

FAMILIES: dict[str, Family] = {
    'facebook': Family(
        name='facebook',
        layout='downsample_layers.0.0.weight, stages.0.0.dwconv.weight, '
        'head.weight',
        signature=rf'^{_BLOCK}\.dwconv\.weight$',
        prefixes=(),
        rules=(
            (rf'downsample_layers\.(\d)\.([01])\.{_WB}',
             r'downsample_layers.\1.\2.\3', None),
            (rf'{_BLOCK}\.(dwconv|norm)\.{_WB}', r'stages.\1.\2.\3.\4', None),
            (rf'{_BLOCK}\.(pwconv[12])\.{_WB}', r'stages.\1.\2.\3.\4',
             'linear'),
            (rf'{_BLOCK}\.gamma', r'stages.\1.\2.gamma', None),
            (rf'{_BLOCK}\.grn\.(gamma|beta)', r'stages.\1.\2.grn.\3', 'grn'),
            (rf'norm([0-3])\.{_WB}', r'norm\1.\2', None),
        ),
        classifier=(r'head\..*', rf'norm\.{_WB}'),
    ),
    'openmmlab': Family(
        name='openmmlab',
        layout='backbone.downsample_layers.0.0.weight, '
        'backbone.stages.0.0.depthwise_conv.weight, head.fc.weight',
        signature=rf'^{_BLOCK}\.depthwise_conv\.weight$',
        prefixes=('backbone.', ),
        rules=(
            (rf'downsample_layers\.(\d)\.([01])\.{_WB}',
             r'downsample_layers.\1.\2.\3', None),
            (rf'{_BLOCK}\.depthwise_conv\.{_WB}', r'stages.\1.\2.dwconv.\3',
             None),
            (rf'{_BLOCK}\.norm\.{_WB}', r'stages.\1.\2.norm.\3', None),
            (rf'{_BLOCK}\.pointwise_conv([12])\.{_WB}',
             r'stages.\1.\2.pwconv\3.\4', 'linear'),
            (rf'{_BLOCK}\.gamma', r'stages.\1.\2.gamma', None),
            (rf'{_BLOCK}\.grn\.(gamma|beta)', r'stages.\1.\2.grn.\3', 'grn'),
            (rf'norm([0-3])\.{_WB}', r'norm\1.\2', None),
        ),
        classifier=(r'head\..*', ),
    ),
    'timm': Family(
        name='timm',
        layout='stem.0.weight, stages.1.downsample.1.weight, '
        'stages.0.blocks.0.conv_dw.weight, head.fc.weight',
        signature=r'^stages\.\d+\.blocks\.\d+\.conv_dw\.weight$',
        prefixes=(),
        rules=(
            (rf'stem\.([01])\.{_WB}', r'downsample_layers.0.\1.\2', None),
            (rf'stages\.([1-3])\.downsample\.([01])\.{_WB}',
             r'downsample_layers.\1.\2.\3', None),
            (rf'stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.{_WB}',
             r'stages.\1.\2.dwconv.\3', None),
            (rf'stages\.(\d+)\.blocks\.(\d+)\.norm\.{_WB}',
             r'stages.\1.\2.norm.\3', None),
            (rf'stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc([12])\.{_WB}',
             r'stages.\1.\2.pwconv\3.\4', 'linear'),
            (r'stages\.(\d+)\.blocks\.(\d+)\.gamma', r'stages.\1.\2.gamma',
             None),
            (r'stages\.(\d+)\.blocks\.(\d+)\.mlp\.grn\.weight',
             r'stages.\1.\2.grn.gamma', 'grn'),
            (r'stages\.(\d+)\.blocks\.(\d+)\.mlp\.grn\.bias',
             r'stages.\1.\2.grn.beta', 'grn'),
        ),
        classifier=(r'head\..*', ),
    ),
    'hf': Family(
        name='hf',
        layout='embeddings.patch_embeddings.weight, '
        'encoder.stages.0.layers.0.dwconv.weight, classifier.weight',
        signature=r'^encoder\.stages\.\d+\.layers\.\d+\.dwconv\.weight$',
        prefixes=('convnext.', 'convnextv2.'),
        rules=(
            (rf'embeddings\.patch_embeddings\.{_WB}',
             r'downsample_layers.0.0.\1', None),
            (rf'embeddings\.layernorm\.{_WB}', r'downsample_layers.0.1.\1',
             None),
            (rf'encoder\.stages\.(\d)\.downsampling_layer\.([01])\.{_WB}',
             r'downsample_layers.\1.\2.\3', None),
            (rf'encoder\.stages\.(\d+)\.layers\.(\d+)\.dwconv\.{_WB}',
             r'stages.\1.\2.dwconv.\3', None),
            (rf'encoder\.stages\.(\d+)\.layers\.(\d+)\.layernorm\.{_WB}',
             r'stages.\1.\2.norm.\3', None),
            (rf'encoder\.stages\.(\d+)\.layers\.(\d+)\.(pwconv[12])\.{_WB}',
             r'stages.\1.\2.\3.\4', 'linear'),
            (r'encoder\.stages\.(\d+)\.layers\.(\d+)\.layer_scale_parameter',
             r'stages.\1.\2.gamma', None),
            (r'encoder\.stages\.(\d+)\.layers\.(\d+)\.grn\.weight',
             r'stages.\1.\2.grn.gamma', 'grn'),
            (r'encoder\.stages\.(\d+)\.layers\.(\d+)\.grn\.bias',
             r'stages.\1.\2.grn.beta', 'grn'),
        ) + tuple(
            # ConvNextBackbone's per-output norms, stage1..4 -> norm0..3.
            (rf'hidden_states_norms\.stage{i + 1}\.{_WB}', rf'norm{i}.\1',
             None) for i in range(4)),
        classifier=(rf'layernorm\.{_WB}', r'classifier\..*'),
    ),
}


@dataclass
class Conversion:
    """The result of mapping a state dict to convseg's names.

    ``state_dict``: mapped keys, then the keys no rule knows, unchanged.
    ``sources``: convseg key -> the checkpoint key it came from.
    ``dropped``: classifier keys left out. ``unmatched``: keys kept unchanged.
    """

    family: str
    state_dict: StateDict
    sources: dict[str, str]
    dropped: list[str]
    unmatched: list[str]


# --------------------------------------------------------------------------
# detecting and mapping
# --------------------------------------------------------------------------

def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _first_keys(keys: list[str], count: int = 8) -> str:
    shown = ', '.join(keys[:count])
    more = len(keys) - count
    return shown + (f', ... ({more} more)' if more > 0 else '')


def _known_families() -> str:
    return '; '.join(f'{f.name} ({f.layout})' for f in FAMILIES.values())


def is_segmentor_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """Whether the keys are a whole segmentor's (``decode_head.*``)."""
    return any(k.startswith(HEAD_PREFIXES) for k in state_dict)


def _matches(family: Family, keys: list[str]) -> bool:
    pattern = re.compile(family.signature)
    return any(pattern.match(_strip(k, family.prefixes)) for k in keys)


def detect_family(state_dict: Mapping[str, Any],
                  source: str = 'the state dict') -> str:
    """Name of the family (a key of :data:`FAMILIES`) the keys belong to.

    For a whole segmentation checkpoint, the family of its ``backbone.*``
    keys. Raises :class:`CheckpointFormatError` listing the first keys and the
    known families when none matches.
    """
    keys = [_strip(k, WRAPPER_PREFIXES) for k in state_dict]
    if is_segmentor_state_dict(dict.fromkeys(keys)):
        keys = [k[len('backbone.'):] for k in keys
                if k.startswith('backbone.')]
    for family in FAMILIES.values():
        if _matches(family, keys):
            return family.name
    raise CheckpointFormatError(
        f'cannot tell which ConvNeXt checkpoint family {source} belongs to; '
        f'its first keys are: {_first_keys(list(state_dict))}. Known '
        f'families and their keys: {_known_families()}. If the backbone '
        "keys sit under a prefix, pass it (init_cfg=dict(type='Pretrained', "
        "checkpoint=..., prefix='...'))."
    )


def _convert_backbone(state_dict: Mapping[str, torch.Tensor],
                      family: Family) -> Conversion:
    rules = [(re.compile(p), t, FITS[f] if f else None)
             for p, t, f in family.rules]
    dropped = [re.compile(p) for p in family.classifier]
    out: StateDict = {}
    sources: dict[str, str] = {}
    conversion = Conversion(family.name, out, sources, [], [])
    for original, value in state_dict.items():
        key = _strip(_strip(original, WRAPPER_PREFIXES), family.prefixes)
        for pattern, template, fit in rules:
            found = pattern.fullmatch(key)
            if found:
                new_key = found.expand(template)
                out[new_key] = fit(value) if fit else value
                sources[new_key] = original
                break
        else:
            if any(p.fullmatch(key) for p in dropped):
                conversion.dropped.append(original)
            else:
                conversion.unmatched.append(original)
    for original in conversion.unmatched:
        out[original] = state_dict[original]
        sources[original] = original
    return conversion


def convert(state_dict: Mapping[str, torch.Tensor],
            family: str = 'auto',
            source: str = 'the state dict') -> Conversion:
    """Map ``state_dict`` to convseg's names; return a :class:`Conversion`.

    A whole segmentation checkpoint keeps its ``backbone.`` / ``decode_head.``
    / ``auxiliary_head.`` prefixes and only its backbone keys are mapped.
    """
    if family == 'auto':
        family = detect_family(state_dict, source)
    if family not in FAMILIES:
        raise ValueError(f'unknown checkpoint family {family!r}; known: '
                         f'auto, {", ".join(FAMILIES)}.')
    spec = FAMILIES[family]
    plain = {_strip(k, WRAPPER_PREFIXES): v for k, v in state_dict.items()}
    segmentor = is_segmentor_state_dict(plain)
    backbone = {k[len('backbone.'):]: v for k, v in plain.items()
                if k.startswith('backbone.')} if segmentor else plain
    if not _matches(spec, list(backbone)):
        raise CheckpointFormatError(
            f'{source} is not a {family} checkpoint: no key looks like '
            f'{spec.layout}; its first keys are: '
            f'{_first_keys(list(state_dict))}. Let convseg detect the '
            "family ('auto').")
    if not segmentor:
        return _convert_backbone(plain, spec)
    inner = _convert_backbone(backbone, spec)
    out = {f'backbone.{k}': v for k, v in inner.state_dict.items()}
    sources = {f'backbone.{k}': f'backbone.{v}'
               for k, v in inner.sources.items()}
    for key, value in plain.items():
        if not key.startswith('backbone.'):
            out[key] = value
            sources[key] = key
    return Conversion(family, out, sources,
                      [f'backbone.{k}' for k in inner.dropped],
                      [f'backbone.{k}' for k in inner.unmatched])


def convert_state_dict(state_dict: Mapping[str, torch.Tensor],
                       family: str = 'auto') -> StateDict:
    """Return ``state_dict`` with convseg's key names.

    ``family`` is ``'auto'`` or a key of :data:`FAMILIES`. Backbone keys are
    mapped and the family's classifier keys dropped; keys no rule knows are
    kept unchanged (so that loading reports them as unexpected). Whole
    segmentation checkpoints keep their ``backbone.`` / ``decode_head.`` /
    ``auxiliary_head.`` prefixes.
    """
    return convert(state_dict, family).state_dict
