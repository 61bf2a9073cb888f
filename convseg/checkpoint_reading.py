"""Reading checkpoint files: weights-only loading, URLs and the hub cache.

Every checkpoint convseg reads goes through here. :func:`load_checkpoint_file`
loads a file weights-only, with mmengine's own non-tensor types (its
``HistoryBuffer`` and numpy arrays and scalars) allow-listed, and explains a
refusal; a trusted file that carries other objects loads inside
:func:`unsafe_checkpoint_loading` (or with ``CONVSEG_UNSAFE_LOAD=1``). URLs
are downloaded once into the torch hub cache (:func:`download_checkpoint`).
:func:`read_checkpoint` also reads ``.safetensors`` files and HuggingFace
model directories, and :func:`extract_state_dict` finds the weights inside.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from .errors import CheckpointFormatError, ConvsegError

UNSAFE_LOAD_ENV = 'CONVSEG_UNSAFE_LOAD'

StateDict = dict[str, torch.Tensor]


class UnsafeCheckpointError(ConvsegError, pickle.UnpicklingError):
    """Raised when a checkpoint holds pickled objects outside the allow-list."""

    tool_hint = 'With the convseg tools, pass --unsafe-load.'


class CheckpointDownloadError(ConvsegError, RuntimeError):
    """Raised when a checkpoint URL cannot be downloaded."""


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
            f'convseg.checkpoint_reading.unsafe_checkpoint_loading() or set '
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

    In a distributed run the first process of each node (local rank 0)
    downloads into that node's hub cache while the others wait, so nodes
    without a shared ``TORCH_HOME`` each get the file; every rank then raises
    :class:`CheckpointDownloadError` if the file did not arrive on its node,
    so no rank is left waiting at a barrier.
    """
    from mmengine.dist import barrier, get_dist_info

    cached = hub_checkpoint_path(url)
    _, world_size = get_dist_info()
    # torchrun sets LOCAL_RANK; mmengine sets it for slurm from SLURM_PROCID
    local_rank = int(os.environ.get('LOCAL_RANK', '0')) \
        if world_size > 1 else 0
    reason = "this node's first process could not download it"
    if local_rank == 0 and not os.path.isfile(cached):
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



# --------------------------------------------------------------------------
# checkpoint containers: safetensors, HuggingFace folders, state dicts
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
    return load_checkpoint_file(path, map_location=map_location)


def read_checkpoint(checkpoint: str | os.PathLike,
                    map_location: Any = 'cpu') -> Any:
    """Load a checkpoint file, URL or HuggingFace model directory.

    URLs are downloaded once into the torch hub cache. ``.safetensors``
    files are read with safetensors, everything else weights-only through
    :func:`load_checkpoint_file`.
    """
    path = str(checkpoint)
    if path.startswith(('http://', 'https://')):
        path = download_checkpoint(path)
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
