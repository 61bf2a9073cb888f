"""The few shims the pinned OpenMMLab stack needs on current torch and mmcv-lite.

Each shim says why it exists and when it can go. :func:`apply` installs them
all and is called once by ``import convseg``; it is idempotent.

1. ``mmcv.ops`` without compiled ops (mmcv-lite). mmsegmentation 1.2.2 imports
   ``point_sample`` and ``sigmoid_focal_loss`` from ``mmcv.ops`` at import time,
   and ``mmcv.ops`` fails to import without ``mmcv._ext``. When the compiled
   ops are missing, a small ``mmcv.ops`` module takes its place: it has an
   exact pure-PyTorch ``point_sample`` and, for every other name, a stand-in
   that raises :class:`MissingMmcvOpError` when it is used. With full mmcv
   nothing is touched. Can go when mmseg imports ``mmcv.ops`` lazily.

2. Checkpoint loading on torch >= 2.6. ``torch.load`` now defaults to
   ``weights_only=True`` and mmengine 0.10.7 writes a few non-tensor types
   (its ``HistoryBuffer`` and numpy arrays/scalars) into every checkpoint, so
   it cannot resume its own runs. Instead of switching safety off, exactly
   those types are allow-listed, and mmengine's loaders for local files and
   URLs are replaced, through its own ``CheckpointLoader`` registry, by
   :func:`convseg.checkpoint_reading.read_checkpoint`, which loads
   weights-only and explains a refusal (and also reads ``.safetensors``
   files, so that ``load_from`` takes every file convseg's loaders take). Can go when mmengine loads weights-only itself.

3. Formatting a config once. mmengine prints and dumps a runner's config
   through yapf five times in a training run and four in a test run, each
   time the same text: 0.3-0.6 s each on a 2-vCPU Xeon, a second or two of
   every tool run. mmengine's ``FormatCode`` is wrapped by
   :func:`cached_format_code`, which keeps the last few results: the same
   text and style give the same output, and only a new text is formatted.
   Can go when mmengine formats a config once per runner.

4. The training accuracy without ``topk``. mmseg's decode heads log
   ``acc_seg`` through ``accuracy()``, which takes ``topk`` over the classes
   and gathers the labelled pixels by a boolean index: about 3 ms a call
   on CPU at the quickstart's sizes (16 x 6 x 64 x 64 scores, 2 threads,
   2-vCPU AMD EPYC Zen 3), twice a step (two heads), for a number that is
   only logged. The name the heads call
   (``mmseg.models.decode_heads.decode_head.accuracy``) is wrapped by
   :func:`top1_accuracy`, which takes about 1 ms: its top-1 case is the
   index of the largest score and a masked count, with mmseg's arithmetic,
   so it logs the same value; other cases go to mmseg's function. Can go
   when mmseg counts top-1 that way.

The checkpoint reading functions that used to live here
(``load_checkpoint_file``, ``unsafe_checkpoint_loading``,
``download_checkpoint``...) moved to :mod:`convseg.checkpoint_reading`; their
old names here still work for one release, with a ``DeprecationWarning``.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import Any

import torch
import torch.nn.functional as F

# :mod:`convseg.mmcv_ops_hook` imports this module while mmseg is half
# imported, before the convseg package's own ``__init__`` runs; so at its top
# level it imports only convseg modules that import nothing but the standard
# library. checkpoint_reading is imported where it is used.
from .errors import ConvsegError

FULL_MMCV_HINT = (
    'Install full mmcv with compiled ops (see docs/get_started.md, '
    '"Installing": `pip uninstall -y mmcv-lite && pip install "mmcv>=2.0.0rc4,<2.2"` '
    'with a build matching your torch), or pick a model that does not use it.')


class MissingMmcvOpError(ConvsegError, RuntimeError):
    """Raised when a compiled mmcv op is used on an mmcv without compiled ops."""


class MissingMmcvOpImportError(MissingMmcvOpError, ImportError):
    """:class:`MissingMmcvOpError` for ``import mmcv.ops.<name>``; also an
    ``ImportError``, so that code that tries the import can fall back."""


#: type names under which full mmcv 2.1 registers compiled ops in mmengine's
#: ``MODELS`` registry (from mmcv/ops/*.py), with the class behind each.
MMCV_OP_TYPES: dict[str, str] = {
    'carafe': 'CARAFEPack',
    'CrissCrossAttention': 'CrissCrossAttention',
    'DCN': 'DeformConv2dPack',
    'DCNv2': 'ModulatedDeformConv2dPack',
    'MMSyncBN': 'SyncBatchNorm',
    'MultiScaleDeformableAttention': 'MultiScaleDeformableAttention',
    'SAC': 'SAConv2d',
    **{name: name for name in (
        'SparseConv2d', 'SparseConv3d', 'SparseConv4d',
        'SparseConvTranspose2d', 'SparseConvTranspose3d',
        'SparseInverseConv2d', 'SparseInverseConv3d',
        'SubMConv2d', 'SubMConv3d', 'SubMConv4d')},
}


# --------------------------------------------------------------------------
# 1. mmcv.ops on mmcv-lite
# --------------------------------------------------------------------------

def mmcv_has_compiled_ops() -> bool:
    """Whether the installed mmcv ships its compiled extension ``mmcv._ext``."""
    return importlib.util.find_spec('mmcv._ext') is not None


def point_sample(input: torch.Tensor, points: torch.Tensor,
                 align_corners: bool = False, **kwargs: Any) -> torch.Tensor:
    """Sample ``input`` (N, C, H, W) at ``points`` in [0, 1] coordinates.

    ``points`` is (N, P, 2) or (N, Hp, Wp, 2) with (x, y) order; returns
    (N, C, P) or (N, C, Hp, Wp). Same contract as ``mmcv.ops.point_sample``,
    which is bilinear ``grid_sample`` on points mapped to [-1, 1].
    """
    flat = points.dim() == 3
    grid = points.unsqueeze(2) if flat else points
    out = F.grid_sample(input, 2.0 * grid - 1.0, align_corners=align_corners,
                        **kwargs)
    return out.squeeze(3) if flat else out


def _missing_op_message(what: str) -> str:
    return (f'{what} needs mmcv\'s compiled ops, and the installed mmcv has '
            f'none (mmcv-lite). {FULL_MMCV_HINT}')


def _missing_op(name: str, what: str | None = None) -> type:
    message = _missing_op_message(what or f'mmcv.ops.{name}')

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise MissingMmcvOpError(message)

    return type(name, (), {
        '__init__': __init__,
        '__module__': 'mmcv.ops',
        '__doc__': f'Stand-in for mmcv.ops.{name}: raises when used.'})


class _MissingSubmodules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import mmcv.ops.<name>`` under the stand-in with
    :class:`MissingMmcvOpImportError`, which is an ``ImportError`` too, so
    that code that tries such imports and falls back keeps working."""

    def find_spec(self, fullname: str, path: Any = None,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        """A spec for ``mmcv.ops.*`` while the stand-in is in place."""
        stand_in = getattr(sys.modules.get('mmcv.ops'), '__convseg_lite__',
                           False)
        if stand_in and fullname.startswith('mmcv.ops.'):
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        """Default module creation."""
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        """Refuse: the submodule needs the compiled ops."""
        error = MissingMmcvOpImportError(_missing_op_message(module.__name__))
        error.name = module.__name__
        raise error


def lite_ops_module() -> types.ModuleType:
    """Build the stand-in ``mmcv.ops`` module (without installing it).

    ``point_sample`` works; any other attribute is a class that raises
    :class:`MissingMmcvOpError` when used, and importing a submodule
    (``import mmcv.ops.nms``) raises :class:`MissingMmcvOpImportError` once
    :func:`install_mmcv_ops_shim` has put the stand-in in place.
    """
    module = types.ModuleType(
        'mmcv.ops', 'convseg stand-in for mmcv.ops on an mmcv without '
        'compiled ops: point_sample works, every other op raises when used.')
    module.point_sample = point_sample
    module.__convseg_lite__ = True
    module.__path__ = []  # a package, so that submodule imports reach us
    cache: dict[str, type] = {}

    def __getattr__(name: str) -> type:
        if name.startswith('__'):
            raise AttributeError(name)
        return cache.setdefault(name, _missing_op(name))

    module.__getattr__ = __getattr__
    return module


def register_missing_op_types() -> list[str]:
    """Register a stand-in under each of :data:`MMCV_OP_TYPES` that
    mmengine's ``MODELS`` lacks; return the names registered.

    A config naming one (``dcn=dict(type='DCN')``) then gets
    :class:`MissingMmcvOpError` when it is built, not a registry ``KeyError``.
    """
    from mmengine.registry import MODELS

    added = []
    for name, class_name in MMCV_OP_TYPES.items():
        if MODELS.get(name) is None:
            what = f"type='{name}' (mmcv.ops.{class_name})"
            MODELS.register_module(name=name,
                                   module=_missing_op(class_name, what))
            added.append(name)
    return added


def install_mmcv_ops_shim(force: bool = False) -> bool:
    """Put the stand-in ``mmcv.ops`` in place when compiled ops are missing.

    Installs :func:`lite_ops_module` as ``mmcv.ops``, the finder that refuses
    its submodules, and :func:`register_missing_op_types`. ``force`` installs
    it regardless (tests use it to simulate mmcv-lite). Returns whether the
    stand-in is in place.
    """
    current = sys.modules.get('mmcv.ops')
    if getattr(current, '__convseg_lite__', False):
        return True
    if not force and mmcv_has_compiled_ops():
        return False
    import mmcv
    module = lite_ops_module()
    sys.modules['mmcv.ops'] = module
    mmcv.ops = module
    if not any(isinstance(f, _MissingSubmodules) for f in sys.meta_path):
        sys.meta_path.insert(0, _MissingSubmodules())
    # mmcv's transformer bricks try mmcv.ops.multi_scale_deform_attn at import
    # and warn when it is missing; with the stand-in that is expected, and the
    # op's own error says what to do if a model ever needs it.
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Fail to import')
        importlib.import_module('mmcv.cnn.bricks.transformer')
    register_missing_op_types()
    return True


# --------------------------------------------------------------------------
# 2. weights-only checkpoint loading
# --------------------------------------------------------------------------

def _load_from_local(filename: str, map_location: Any = None) -> Any:
    from .checkpoint_reading import read_checkpoint
    return read_checkpoint(filename, map_location)


def _load_from_http(filename: str, map_location: Any = None,
                    model_dir: Any = None) -> Any:
    from .checkpoint_reading import read_checkpoint
    return read_checkpoint(filename, map_location)


def install_checkpoint_loading() -> None:
    """Allow-list mmengine's types and route its loaders through
    :mod:`convseg.checkpoint_reading`'s weights-only loading."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from .checkpoint_reading import checkpoint_safe_globals

    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    CheckpointLoader.register_scheme('', _load_from_local, force=True)
    CheckpointLoader.register_scheme(('http://', 'https://'), _load_from_http,
                                     force=True)


# --------------------------------------------------------------------------
# 3. one yapf pass per config text
# --------------------------------------------------------------------------

#: texts :func:`cached_format_code` keeps (a runner formats one or two)
FORMAT_CACHE_SIZE = 8


def cached_format_code(format_code: Any) -> Any:
    """``format_code`` (yapf's ``FormatCode``) with its last
    :data:`FORMAT_CACHE_SIZE` results kept, by text and style.

    Only mmengine's call, ``format_code(text, style_config=DICT)`` with
    plain values, is cached; any other call goes straight to
    ``format_code``.
    """
    if getattr(format_code, 'convseg_cached', False):
        return format_code

    @functools.lru_cache(maxsize=FORMAT_CACHE_SIZE)
    def by_style(text: str, style: tuple) -> Any:
        return format_code(text, style_config=dict(style))

    @functools.wraps(format_code)
    def format_once(text: str, *args: Any, **kwargs: Any) -> Any:
        style = kwargs.get('style_config')
        if not args and set(kwargs) == {'style_config'} and isinstance(
                style, dict):
            key = tuple(sorted(style.items()))
            try:
                hash(key)
            except TypeError:  # a value that cannot be a cache key
                return format_code(text, *args, **kwargs)
            return by_style(text, key)
        return format_code(text, *args, **kwargs)

    format_once.convseg_cached = True
    return format_once


def install_config_format_cache() -> None:
    """Wrap mmengine's ``FormatCode`` with :func:`cached_format_code`."""
    from mmengine.config import config as mmengine_config
    mmengine_config.FormatCode = cached_format_code(mmengine_config.FormatCode)


def top1_accuracy(accuracy: Any) -> Any:
    """mmseg's ``accuracy(pred, target, topk, thresh, ignore_index)`` with
    its usual case, ``topk=1`` and no ``thresh``, computed as the index of
    the largest score over the classes and a count of the labelled pixels
    it gets right.

    The result is mmseg's to the bit: the same float32 tensor of shape (1,),
    ``(correct + eps) * 100 / (labelled + eps)`` (so 100 when every pixel is
    ignored, as in mmseg). Where a pixel's two highest scores tie exactly,
    ``max`` takes the first class and ``topk`` may take the other. Any
    other call goes to ``accuracy``.
    """
    if getattr(accuracy, 'convseg_top1', False):
        return accuracy

    @functools.wraps(accuracy)
    def fast_accuracy(pred: torch.Tensor,
                      target: torch.Tensor,
                      topk: Any = 1,
                      thresh: Any = None,
                      ignore_index: Any = None) -> Any:
        if (not isinstance(topk, int) or topk != 1 or thresh is not None
                or pred.size(0) == 0 or pred.ndim != target.ndim + 1
                or pred.shape[:1] + pred.shape[2:] != target.shape):
            return accuracy(pred, target, topk, thresh, ignore_index)
        # max().indices: as fast on NCHW as on channels-last scores, where
        # argmax(1) is ten times slower on NCHW (torch 2.13 CPU)
        correct = pred.detach().max(1).indices == target
        if ignore_index is None:
            labelled = target.numel()
        else:
            valid = target != ignore_index
            correct &= valid
            labelled = int(valid.sum())
        eps = torch.finfo(torch.float32).eps
        count = correct.sum().float().reshape(1) + eps
        return count.mul_(100.0 / (labelled + eps))

    fast_accuracy.convseg_top1 = True
    return fast_accuracy


def install_top1_accuracy() -> None:
    """Wrap the ``accuracy`` mmseg's decode heads log ``acc_seg`` with."""
    from mmseg.models.decode_heads import decode_head
    decode_head.accuracy = top1_accuracy(decode_head.accuracy)


_applied = False


def apply() -> None:
    """Install every shim above (idempotent)."""
    global _applied
    if _applied:
        return
    install_mmcv_ops_shim()
    install_checkpoint_loading()
    install_config_format_cache()
    install_top1_accuracy()
    _applied = True
