"""Kernels for the fast path's convs and GEMMs, chosen by measurement.

Each conv or GEMM the fast path runs has candidate kernels of equal result:

* ``conv3x3`` (3x3 convs of NHWC maps): ``direct`` (``F.conv2d``, oneDNN on
  CPU), ``winograd_mkl`` (Winograd with its GEMMs by ``torch.bmm``, MKL on
  CPU) and ``winograd_onednn`` (the same GEMMs as one grouped 1x1 conv,
  oneDNN);
* ``pointwise`` (1x1 convs and the backbone's linears on NHWC maps): ``mkl``
  (``F.linear``) and ``onednn`` (a 1x1 conv of channels-last maps).

A :class:`KernelChooser` times the candidates once per shape on the call's
own input (interleaved, :data:`REPEATS` runs each after a warm-up, medians)
and keeps the fastest, unless it is within :data:`MARGIN` of the default,
which then stays. Decisions are cached on disk, keyed by CPU model, thread
count, torch version and shape, so only the first run on a machine pays.
Measuring is off with ``CONVSEG_MEASURE_KERNELS=0`` or ``measure=False``;
then the defaults run: ``winograd_mkl`` for 3x3 convs where
:func:`winograd_pays`, else ``direct``; ``mkl`` for pointwise layers.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log

from ..fileio import atomic_write_text
from ..hardware import cpu_model
from .nhwc import to_nchw, to_nhwc
from .winograd import winograd_conv3x3, winograd_filters

CANDIDATES = {
    'conv3x3': ('direct', 'winograd_mkl', 'winograd_onednn'),
    'pointwise': ('mkl', 'onednn'),
}
MEASURE_ENV = 'CONVSEG_MEASURE_KERNELS'
CACHE_ENV = 'CONVSEG_KERNEL_CACHE'
#: timed runs per candidate (after one warm-up), and the fraction by which
#: a candidate must beat the default to replace it
REPEATS = 5
MARGIN = 0.05

#: the shape rule: Winograd for both channel counts at least this and maps
#: of at least this many pixels (the README's Speed section has the figures)
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_PIXELS = 16 * 16


def winograd_pays(in_ch: int, out_ch: int, height: int, width: int) -> bool:
    """The shape rule: Winograd for this conv when measuring is off."""
    return (min(in_ch, out_ch) >= WINOGRAD_MIN_CHANNELS
            and height * width >= WINOGRAD_MIN_PIXELS)


def measuring_enabled(measure: bool | None) -> bool:
    """``measure``, or where None, the environment (on unless set to 0)."""
    if measure is not None:
        return measure
    return os.environ.get(MEASURE_ENV, '1').strip().lower() not in (
        '0', 'false', 'no', 'off')


def cache_file() -> Path:
    """Where decisions are kept: $CONVSEG_KERNEL_CACHE, else the user cache
    dir ($XDG_CACHE_HOME or ~/.cache) / convseg / kernels.json."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'convseg' / 'kernels.json'


def machine_key() -> str:
    """What a decision depends on besides the shape."""
    return (f'{cpu_model()} | {torch.get_num_threads()} threads | '
            f'torch {torch.__version__}')


def _read_cache(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        print_log(f'ignoring the kernel cache {path}: {err}',
                  logger='current',
                  level=logging.WARNING)
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(data, indent=1, sort_keys=True), path)
    except OSError as err:
        print_log(f'could not write the kernel cache {path}: {err}; '
                  'decisions are kept for this process only',
                  logger='current',
                  level=logging.WARNING)


def time_candidates(candidates: Mapping[str, Callable[[], object]],
                    repeats: int = REPEATS) -> dict[str, float]:
    """Median seconds per call of each candidate, runs interleaved."""
    for run in candidates.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for rep in range(repeats):
        for name in (names if rep % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def pick(timings: Mapping[str, float], default: str) -> str:
    """The fastest candidate, unless the default is within :data:`MARGIN`."""
    best = min(timings, key=timings.__getitem__)
    if default in timings and timings[best] >= timings[default] * (1 -
                                                                  MARGIN):
        return default
    return best


class KernelChooser:
    """Chooses one candidate kernel per op and shape, and remembers it.

    Args:
        measure: time the candidates (True), use the defaults (False), or
            as ``CONVSEG_MEASURE_KERNELS`` says (None: on unless 0).
        force: op -> candidate, used whatever the measurement would say.
        allowed: op -> the candidates that may be measured or chosen.
    """

    def __init__(self,
                 measure: bool | None = None,
                 force: Mapping[str, str] | None = None,
                 allowed: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.measure = measuring_enabled(measure)
        self.force = dict(force or {})
        self.allowed = {op: tuple(c) for op, c in CANDIDATES.items()}
        self.allowed.update(allowed or {})
        for op, name in self.force.items():
            if op not in CANDIDATES or name not in CANDIDATES[op]:
                known = ', '.join(f'{o}: {"|".join(c)}'
                                  for o, c in CANDIDATES.items())
                raise ValueError(f'unknown kernel {op}={name!r}; the '
                                 f'candidates are {known}')
        self.decisions: dict[str, dict] = {}
        self._unlogged: list[str] = []

    def choose(self, op: str, shape: str,
               candidates: Mapping[str, Callable[[], object]],
               default: str) -> str:
        """The candidate to run for ``op`` at ``shape`` (measured once)."""
        if op in self.force:
            return self.force[op]
        key = f'{op} {shape}'
        if key in self.decisions:
            return self.decisions[key]['kernel']
        runs = {n: r for n, r in candidates.items() if n in self.allowed[op]}
        if default not in runs:
            default = next(iter(runs))
        entry = dict(kernel=default, source='default')
        if self.measure and len(runs) > 1:
            path = cache_file()
            cached = _read_cache(path).get(machine_key(), {}).get(key)
            if isinstance(cached, dict) and cached.get('kernel') in runs:
                entry = dict(cached, source='cache')
            else:
                timings = time_candidates(runs)
                entry = dict(kernel=pick(timings, default),
                             ms={n: round(t * 1e3, 3)
                                 for n, t in timings.items()})
                data = _read_cache(path)
                data.setdefault(machine_key(), {})[key] = entry
                _write_cache(path, data)
                entry = dict(entry, source='measured')
        self.decisions[key] = entry
        if self.measure:
            self._unlogged.append(key)
        return entry['kernel']

    def table(self, keys: list[str] | None = None) -> str:
        """The decisions as text, one line per op and shape."""
        lines = []
        for key in (self.decisions if keys is None else keys):
            entry = self.decisions[key]
            ms = entry.get('ms')
            timing = ('  ' + ', '.join(f'{n} {t:.1f} ms'
                                       for n, t in ms.items())) if ms else ''
            lines.append(f'  {key:<44} {entry["kernel"]:<16} '
                         f'({entry["source"]}){timing}')
        return '\n'.join(lines)

    def log_new(self) -> None:
        """Log the decisions made since the last call, once (when
        measuring: otherwise they are the defaults)."""
        if self._unlogged:
            print_log(f'fast path kernels on {machine_key()}:\n' +
                      self.table(self._unlogged),
                      logger='current',
                      level=logging.INFO)
            self._unlogged = []


def as_chooser(kernels: KernelChooser | bool | None,
               owner: str) -> KernelChooser:
    """``kernels`` itself, or for the former ``winograd`` argument (True,
    False, None) the chooser that does what it did, with a warning."""
    if isinstance(kernels, KernelChooser):
        return kernels
    warnings.warn(
        f'{owner}(..., winograd={kernels!r}) is deprecated and will be '
        'removed in the next release; pass a '
        'convseg.apis.fast.KernelChooser instead',
        DeprecationWarning,
        stacklevel=3)
    if kernels is None:
        return KernelChooser(measure=False)
    return KernelChooser(
        measure=False,
        force={'conv3x3': 'winograd_mkl' if kernels else 'direct'})


def _grouped_gemm(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """bmm(v, filters) as one grouped 1x1 conv: v (G, T, Ci), weight
    (G * Co, Ci, 1, 1) -> (G, T, Co)."""
    groups, tiles, in_ch = v.shape
    x = v.transpose(0, 1).reshape(1, tiles, 1, groups * in_ch)
    y = F.conv2d(to_nchw(x), weight, groups=groups)
    return y.permute(0, 2, 3, 1).reshape(tiles, groups, -1).transpose(0, 1)


def shape_key(x: torch.Tensor, out_ch: int) -> str:
    """'N x H x W  Ci->Co dtype' of an NHWC input."""
    batch, height, width, in_ch = x.shape
    dtype = str(x.dtype).replace('torch.', '')
    return f'{in_ch}->{out_ch} {batch}x{height}x{width} {dtype}'


class Conv3x3(nn.Module):
    """3x3 conv (stride 1, padding 1) of NHWC maps by the chosen kernel.

    (N, H, W, Ci) -> (N, H, W, Co). The kernel comes from ``chooser`` per
    input shape; the Winograd filters are made on first use and kept.
    """

    def __init__(self, weight: torch.Tensor,
                 chooser: KernelChooser | bool | None) -> None:
        super().__init__()
        self.register_buffer('weight',
                             weight.detach().contiguous(),
                             persistent=False)
        self.chooser = as_chooser(chooser, 'Conv3x3')
        self._filters: dict[tuple, torch.Tensor] = {}

    def _prepared(self, kind: str) -> torch.Tensor:
        key = (kind, str(self.weight.device), self.weight.dtype)
        if key not in self._filters:
            filters = winograd_filters(self.weight)
            if kind == 'winograd_onednn':
                n2, in_ch, out_ch = filters.shape
                filters = filters.transpose(1, 2).reshape(
                    n2 * out_ch, in_ch, 1, 1).contiguous()
            self._filters[key] = filters
        return self._filters[key]

    def run(self, kind: str, x: torch.Tensor,
            bias: torch.Tensor | None) -> torch.Tensor:
        """The conv of NHWC ``x`` (+ ``bias``) by kernel ``kind``."""
        if kind == 'direct':
            return to_nhwc(F.conv2d(to_nchw(x), self.weight, bias, padding=1))
        if kind == 'winograd_mkl':
            return winograd_conv3x3(x, self._prepared(kind), bias)
        return winograd_conv3x3(x, self._prepared(kind), bias, _grouped_gemm)

    def kernel_for(self, x: torch.Tensor) -> str:
        """The kernel the call on NHWC ``x`` runs."""
        out_ch = self.weight.shape[0]
        default = ('winograd_mkl' if winograd_pays(x.shape[3], out_ch,
                                                   *x.shape[1:3]) else
                   'direct')
        runs = {
            kind: (lambda kind=kind: self.run(kind, x, None))
            for kind in CANDIDATES['conv3x3']
        }
        return self.chooser.choose('conv3x3', shape_key(x, out_ch), runs,
                                   default)

    def uses_winograd(self, x: torch.Tensor) -> bool:
        """Whether the call on NHWC ``x`` goes through Winograd."""
        return self.kernel_for(x) != 'direct'

    def forward(self,
                x: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """Convolve x; add ``bias`` (Co,) if given."""
        return self.run(self.kernel_for(x), x, bias)


class Pointwise(nn.Module):
    """A 1x1 conv / linear layer of NHWC maps by the chosen kernel.

    (N, H, W, Ci) -> (N, H, W, Co), ``weight`` (Co, Ci), ``bias`` (Co,) or
    None; both are kept as (derived) buffers.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None,
                 chooser: KernelChooser) -> None:
        super().__init__()
        self.register_buffer('weight',
                             weight.detach().contiguous(),
                             persistent=False)
        self.register_buffer(
            'bias',
            bias.detach().contiguous() if bias is not None else None,
            persistent=False)
        self.chooser = chooser

    def run(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        """The layer on NHWC ``x`` by kernel ``kind``."""
        if kind == 'mkl':
            return F.linear(x, self.weight, self.bias)
        return to_nhwc(
            F.conv2d(to_nchw(x.contiguous()), self.weight[:, :, None, None],
                     self.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on NHWC ``x`` (N, H, W, Ci)."""
        runs = {
            kind: (lambda kind=kind: self.run(kind, x))
            for kind in CANDIDATES['pointwise']
        }
        kind = self.chooser.choose('pointwise',
                                   shape_key(x, self.weight.shape[0]), runs,
                                   'mkl')
        return self.run(kind, x)

