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
   URLs are replaced, through its own ``CheckpointLoader`` registry, by ones
   that load weights-only and explain a refusal. A trusted file that carries
   other objects loads inside :func:`unsafe_checkpoint_loading` (the tools'
   ``--unsafe-load``). Can go when mmengine loads weights-only itself.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pickle
import re
import sys
import types
import warnings
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from .errors import ConvsegError

UNSAFE_LOAD_ENV = 'CONVSEG_UNSAFE_LOAD'

FULL_MMCV_HINT = (
    'Install full mmcv with compiled ops (see the README, "Installing on a GPU '
    'machine": `pip uninstall -y mmcv-lite && pip install "mmcv>=2.0.0rc4,<2.2"` '
    'with a build matching your torch), or pick a model that does not use it.')


class MissingMmcvOpError(ConvsegError, RuntimeError):
    """Raised when a compiled mmcv op is used on an mmcv without compiled ops."""


class UnsafeCheckpointError(ConvsegError, pickle.UnpicklingError):
    """Raised when a checkpoint holds pickled objects outside the allow-list."""

    tool_hint = 'With the convseg tools, pass --unsafe-load.'


class CheckpointDownloadError(ConvsegError, RuntimeError):
    """Raised when a checkpoint URL cannot be downloaded."""


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


def _missing_op(name: str) -> type:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise MissingMmcvOpError(
            f'mmcv.ops.{name} needs mmcv\'s compiled ops, and the installed '
            f'mmcv has none (mmcv-lite). {FULL_MMCV_HINT}')

    return type(name, (), {
        '__init__': __init__,
        '__module__': 'mmcv.ops',
        '__doc__': f'Stand-in for mmcv.ops.{name}: raises when used.'})


def _lite_ops_module() -> types.ModuleType:
    module = types.ModuleType(
        'mmcv.ops', 'convseg stand-in for mmcv.ops on an mmcv without '
        'compiled ops: point_sample works, every other op raises when used.')
    module.point_sample = point_sample
    module.__convseg_lite__ = True
    cache: dict[str, type] = {}

    def __getattr__(name: str) -> type:
        if name.startswith('__'):
            raise AttributeError(name)
        return cache.setdefault(name, _missing_op(name))

    module.__getattr__ = __getattr__
    return module


def install_mmcv_ops_shim(force: bool = False) -> bool:
    """Put the stand-in ``mmcv.ops`` in place when compiled ops are missing.

    ``force`` installs it regardless (tests use it to simulate mmcv-lite).
    Returns whether the stand-in is in place.
    """
    current = sys.modules.get('mmcv.ops')
    if getattr(current, '__convseg_lite__', False):
        return True
    if not force and mmcv_has_compiled_ops():
        return False
    import mmcv
    module = _lite_ops_module()
    sys.modules['mmcv.ops'] = module
    mmcv.ops = module
    # mmcv's transformer bricks try mmcv.ops.multi_scale_deform_attn at import
    # and warn when it is missing; with the stand-in that is expected, and the
    # op's own error says what to do if a model ever needs it.
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Fail to import')
        importlib.import_module('mmcv.cnn.bricks.transformer')
    return True


# --------------------------------------------------------------------------
# 2. weights-only checkpoint loading
# --------------------------------------------------------------------------

def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """``getattr`` as checkpoints may use it: HistoryBuffer statistics only.

    A ``HistoryBuffer`` pickles its table of statistics methods, and pickle
    spells a method as ``getattr(HistoryBuffer, 'mean')``. Allowing the real
    ``getattr`` would let a file reach any attribute of any allowed object,
    so this stand-in answers for that one class and its registered methods.
    """
    from mmengine.logging import HistoryBuffer

    # the class fills its table when the first buffer is made, which a fresh
    # process (tools/train.py --resume) has not done yet: also take the four
    # methods it always registers.
    known = set(HistoryBuffer._statistics_methods) | {
        'min', 'max', 'current', 'mean'}
    if owner is HistoryBuffer and name in known:
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'GLOBAL builtins.getattr({owner!r}, {name!r}) is not allowed')


def checkpoint_safe_globals() -> list:
    """The non-tensor types mmengine writes into checkpoints, for torch.load.

    mmengine stores its ``MessageHub`` state: ``HistoryBuffer`` objects holding
    numpy arrays and their statistics methods (see
    :func:`_history_buffer_statistic`), and numpy scalars in the runtime info.
    numpy's pickles name ``numpy.core.multiarray`` (numpy 1) or
    ``numpy._core.multiarray`` (numpy 2); both spellings are listed so files
    from either load.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer

    core = np._core if hasattr(np, '_core') else np.core
    multiarray = core.multiarray
    scalar_types = (np.bool_, np.int8, np.int16, np.int32, np.int64,
                    np.uint8, np.uint16, np.uint32, np.uint64,
                    np.float16, np.float32, np.float64)
    allowed: list = [HistoryBuffer, np.ndarray, np.dtype,
                     (_history_buffer_statistic, 'builtins.getattr')]
    allowed += [type(np.dtype(t)) for t in scalar_types]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed.append((multiarray._reconstruct, f'{module}._reconstruct'))
        allowed.append((multiarray.scalar, f'{module}.scalar'))
    return allowed


def unsafe_loading_enabled() -> bool:
    """Whether the user opted in to full-pickle loading of trusted files."""
    return os.environ.get(UNSAFE_LOAD_ENV, '') == '1'


@contextlib.contextmanager
def unsafe_checkpoint_loading() -> Iterator[None]:
    """Load trusted checkpoints with full pickle inside this block.

    Only for files whose origin you trust: a pickle can run any code. Sets
    ``CONVSEG_UNSAFE_LOAD=1`` so that worker processes started inside the
    block inherit the choice.
    """
    before = os.environ.get(UNSAFE_LOAD_ENV)
    os.environ[UNSAFE_LOAD_ENV] = '1'
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(UNSAFE_LOAD_ENV, None)
        else:
            os.environ[UNSAFE_LOAD_ENV] = before


def load_checkpoint_file(filename: str, map_location: Any = None) -> Any:
    """``torch.load`` a checkpoint weights-only, with a clear refusal.

    Raises :class:`FileNotFoundError` naming a missing file and
    :class:`UnsafeCheckpointError` naming the offending object for a file that
    carries pickled objects outside :func:`checkpoint_safe_globals`.
    """
    filename = os.path.expanduser(str(filename))
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    if unsafe_loading_enabled():
        return torch.load(filename, map_location=map_location,
                          weights_only=False)
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r'GLOBAL (.+?) (?:was|is) not', str(err))
        what = found.group(1) if found else str(err).splitlines()[0]
        raise UnsafeCheckpointError(
            f'refusing to load checkpoint {filename}: it holds a pickled '
            f'object ({what}) that is not plain weights or one of the types '
            f'mmengine writes. Loading it could run code. Only if you trust '
            f'where the file comes from, load it inside '
            f'convseg.compat.unsafe_checkpoint_loading() or set '
            f'{UNSAFE_LOAD_ENV}=1.') from None


GENERIC_CHECKPOINT_NAMES = frozenset(
    {'model.safetensors', 'pytorch_model.bin', 'model.pth', 'checkpoint.pth'})


def hub_checkpoint_path(url: str) -> str:
    """Where a checkpoint URL is cached: ``<torch hub dir>/checkpoints/<name>``.

    The name is the URL's file name, as torch.hub does; generic names that
    many repositories share (``model.safetensors``...) get a short hash of the
    URL in front so that two models never share one cache file.
    """
    name = os.path.basename(url.split('?')[0])
    if name in GENERIC_CHECKPOINT_NAMES:
        digest = hashlib.sha256(url.encode()).hexdigest()[:8]
        name = f'{digest}-{name}'
    return os.path.join(torch.hub.get_dir(), 'checkpoints', name)


def download_checkpoint(url: str) -> str:
    """Download ``url`` into the torch hub cache once; return the local path.

    In a distributed run rank 0 downloads while the others wait; every rank
    then raises the same :class:`CheckpointDownloadError` if the file did not
    arrive, so no rank is left waiting at a barrier.
    """
    from mmengine.dist import barrier, get_dist_info

    cached = hub_checkpoint_path(url)
    rank, world_size = get_dist_info()
    reason = 'rank 0 could not download it'
    if rank == 0 and not os.path.isfile(cached):
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, cached, progress=False)
        except Exception as err:  # urllib raises several types
            reason = str(err)
    if world_size > 1:
        barrier()
    if not os.path.isfile(cached):
        local = f'/path/to/{os.path.basename(cached)}'
        error = CheckpointDownloadError(
            f'could not download checkpoint {url} ({reason}). Offline? '
            f'Download it on a machine with internet access and put it at '
            f'{cached}, or point the config at a local file (e.g. '
            f'model.backbone.init_cfg.checkpoint={local}), or train from '
            f'scratch with model.backbone.init_cfg=None.')
        error.tool_hint = (
            f'On the command line: --cfg-options '
            f'model.backbone.init_cfg.checkpoint={local}, or --cfg-options '
            f'model.backbone.init_cfg=None.')
        raise error
    return cached


def _load_from_local(filename: str, map_location: Any = None) -> Any:
    return load_checkpoint_file(filename, map_location)


def _load_from_http(filename: str, map_location: Any = None,
                    model_dir: Any = None) -> Any:
    return load_checkpoint_file(download_checkpoint(filename), map_location)


def install_checkpoint_loading() -> None:
    """Allow-list mmengine's types and route its loaders through convseg's."""
    from mmengine.runner.checkpoint import CheckpointLoader

    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    CheckpointLoader.register_scheme('', _load_from_local, force=True)
    CheckpointLoader.register_scheme(('http://', 'https://'), _load_from_http,
                                     force=True)


_applied = False


def apply() -> None:
    """Install every shim above (idempotent)."""
    global _applied
    if _applied:
        return
    install_mmcv_ops_shim()
    install_checkpoint_loading()
    _applied = True
