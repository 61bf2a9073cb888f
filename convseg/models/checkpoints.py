"""Key maps between ConvNeXt checkpoint families and convseg's names.

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

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .. import compat
from ..errors import ConvsegError
from .convnext import arch_settings

StateDict = Dict[str, torch.Tensor]
Checkpoint = Union[str, os.PathLike, Mapping[str, Any]]

#: parts of a whole segmentation checkpoint that are not the backbone.
HEAD_PREFIXES = ('decode_head.', 'auxiliary_head.')

#: prefixes that wrappers (DistributedDataParallel) put before every key.
WRAPPER_PREFIXES = ('module.', )

_WB = r'(weight|bias)'


class CheckpointFormatError(ConvsegError, ValueError):
    """Raised when a checkpoint's layout is not one convseg can map."""


class CheckpointMismatchError(ConvsegError, ValueError):
    """Raised when a checkpoint does not fit the model it is loaded into."""


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
    prefixes: Tuple[str, ...]
    rules: Tuple[Tuple[str, str, Optional[str]], ...]
    classifier: Tuple[str, ...]


#: tensor reshapes that make a family's parameter fit convseg's module.
FITS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    # GRN gamma/beta: (C,) in mmpretrain and timm -> (1, 1, 1, C) official.
    'grn': lambda t: t.reshape(1, 1, 1, -1),
    # pointwise convs stored as 1x1 Conv2d (O, I, 1, 1) -> Linear (O, I).
    'linear': lambda t: t.flatten(1) if t.dim() == 4 else t,
}

_BLOCK = r'stages\.(\d+)\.(\d+)'

FAMILIES: Dict[str, Family] = {
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
    sources: Dict[str, str]
    dropped: List[str]
    unmatched: List[str]


@dataclass(frozen=True)
class ArchSignature:
    """What a ConvNeXt state dict says about its architecture."""

    depths: Tuple[int, ...]
    dims: Tuple[int, ...]
    use_grn: bool
    layer_scale: bool

    def arch_name(self) -> Optional[str]:
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


# --------------------------------------------------------------------------
# detecting and mapping
# --------------------------------------------------------------------------

def _strip(key: str, prefixes: Tuple[str, ...]) -> str:
    for prefix in prefixes:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _first_keys(keys: List[str], count: int = 8) -> str:
    shown = ', '.join(keys[:count])
    more = len(keys) - count
    return shown + (f', ... ({more} more)' if more > 0 else '')


def _known_families() -> str:
    return '; '.join(f'{f.name} ({f.layout})' for f in FAMILIES.values())


def is_segmentor_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """Whether the keys are a whole segmentor's (``decode_head.*``)."""
    return any(k.startswith(HEAD_PREFIXES) for k in state_dict)


def _matches(family: Family, keys: List[str]) -> bool:
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
    sources: Dict[str, str] = {}
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


def infer_arch(state_dict: Mapping[str, torch.Tensor],
               prefix: str = '') -> Optional[ArchSignature]:
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


# --------------------------------------------------------------------------
# reading files
# --------------------------------------------------------------------------

#: files of a HuggingFace model directory, in the order they are looked for.
HF_WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json',
                   'pytorch_model.bin', 'pytorch_model.bin.index.json')


def _read_safetensors(path: str) -> StateDict:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ImportError(
            f'reading {path} needs the safetensors package: '
            'pip install safetensors') from None
    return load_file(path, device='cpu')


def _read_file(path: str, map_location: Any) -> Any:
    if path.endswith('.safetensors'):
        return _read_safetensors(path)
    if path.endswith('.index.json'):
        with open(path) as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        merged: StateDict = {}
        for shard in shards:
            merged.update(_read_file(
                os.path.join(os.path.dirname(path), shard), map_location))
        return merged
    return compat.load_checkpoint_file(path, map_location=map_location)


def read_checkpoint(checkpoint: Union[str, os.PathLike],
                    map_location: Any = 'cpu') -> Any:
    """Load a checkpoint file, URL or HuggingFace model directory.

    URLs are downloaded once into the torch hub cache. ``.safetensors``
    files are read with safetensors, everything else weights-only through
    :func:`convseg.compat.load_checkpoint_file`.
    """
    path = str(checkpoint)
    if path.startswith(('http://', 'https://')):
        path = compat.download_checkpoint(path)
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        for name in HF_WEIGHT_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return _read_file(os.path.join(path, name), map_location)
        raise FileNotFoundError(
            f'checkpoint directory {path} has none of the weight files '
            f'{", ".join(HF_WEIGHT_FILES)}; point to a checkpoint file.')
    return _read_file(path, map_location)


def extract_state_dict(checkpoint: Mapping[str, Any],
                       source: str = 'the checkpoint') -> StateDict:
    """The weights of a loaded checkpoint.

    ``checkpoint['state_dict']`` (mmengine / mmcv), ``checkpoint['model']``
    (Facebook's releases) or the checkpoint itself when it is a plain
    name -> tensor mapping.
    """
    if isinstance(checkpoint, Mapping):
        for key in ('state_dict', 'model'):
            if isinstance(checkpoint.get(key), Mapping):
                return dict(checkpoint[key])
    if isinstance(checkpoint, Mapping) and checkpoint and all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return dict(checkpoint)
    top = (list(checkpoint) if isinstance(checkpoint, Mapping) else
           type(checkpoint).__name__)
    raise CheckpointFormatError(
        f'{source} holds no weights convseg can find: expected a '
        "'state_dict' or 'model' entry or a plain name -> tensor mapping, "
        f'found {top}.')


def dataset_meta_from(meta: Optional[Mapping[str, Any]]) -> Optional[dict]:
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


# --------------------------------------------------------------------------
# loading into models
# --------------------------------------------------------------------------

def _source_name(checkpoint: Checkpoint) -> str:
    return ('the given state dict' if isinstance(checkpoint, Mapping) else
            str(checkpoint))


def _short(keys: List[str], count: int = 6) -> str:
    return _first_keys(keys, count) if keys else 'none'


def _load_source(checkpoint: Checkpoint, map_location: Any) -> Any:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    return read_checkpoint(checkpoint, map_location)


def load_backbone_weights(backbone: nn.Module,
                          checkpoint: Checkpoint,
                          prefix: Optional[str] = None) -> dict:
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
    unused: List[str] = []
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
    missing = [k for k in model_state if k not in result.state_dict]
    if missing:
        raise CheckpointMismatchError(
            f'checkpoint {source} lacks {len(missing)} weights of the model: '
            f'{_first_keys(missing)}. Check that the config matches the '
            'checkpoint (heads, auxiliary head, arch).')
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
