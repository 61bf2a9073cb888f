"""The kernel table: every implementation of the fast path's convs and GEMMs.

:data:`KERNELS` maps each op to its kernels by name; everything else follows
from it: the candidates a :class:`KernelChooser` measures, the default of
each shape, which kernels may run in bfloat16, and the error an unknown name
raises. Adding a kernel is one entry. The ops:

* ``conv3x3`` (3x3 convs of NHWC maps): ``winograd_mkl`` (Winograd with its
  GEMMs by ``torch.bmm``, MKL on CPU), ``winograd_onednn`` (the same GEMMs as
  one grouped 1x1 conv, oneDNN), ``direct`` (``F.conv2d``, oneDNN) and
  ``direct_packed`` (the same oneDNN conv with its weight reordered once
  into oneDNN's blocked layout instead of at every call, and the bias
  added inside; bf16 only, where its values equal ``direct``'s: in float32
  it sums in another order and moved the logits past the API tests' 1e-5);
* ``pointwise`` (1x1 convs and the backbone's linears on NHWC maps): ``mkl``
  (``F.linear``), ``onednn`` (a 1x1 conv of channels-last maps) and
  ``onednn_linear`` (oneDNN's matmul with the bias inside, the op
  ``torch.compile`` emits on CPU; bf16 only: in float32 it moved the fast
  path's logits past the 1e-5 of the plain model tests hold it to).

A :class:`KernelChooser` times the candidates once per shape on the call's
own input (interleaved, :data:`REPEATS` runs each after a warm-up, medians)
and keeps the fastest, unless it is within :data:`MARGIN` of the default,
which then stays. Decisions are cached on disk, keyed by CPU model, thread
count, torch version and shape, so only the first run on a machine pays.
Measuring is off with ``CONVSEG_MEASURE_KERNELS=0`` or ``measure=False``;
then the defaults run: per shape, the first kernel in the table whose
``default_for`` holds (``winograd_mkl`` where :func:`winograd_pays`, else
``direct``; ``mkl``).
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log

from ..fileio import atomic_write_text
from ..hardware import cpu_model
from .errors import UnknownKernelError
from .nhwc import to_nchw, to_nhwc
from .winograd import winograd_conv3x3, winograd_filters

MEASURE_ENV = 'CONVSEG_MEASURE_KERNELS'
CACHE_ENV = 'CONVSEG_KERNEL_CACHE'
#: timed runs per candidate (after one warm-up), and the fraction by which
#: a candidate must beat the default to replace it
REPEATS = 5
MARGIN = 0.05

#: the shape rule: Winograd for both channel counts at least this and maps
#: of at least this many pixels (docs/speed.md has the figures)
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_PIXELS = 16 * 16

Tensor = torch.Tensor


def winograd_pays(in_ch: int, out_ch: int, height: int, width: int) -> bool:
    """The shape rule: Winograd for this conv when measuring is off."""
    return (min(in_ch, out_ch) >= WINOGRAD_MIN_CHANNELS
            and height * width >= WINOGRAD_MIN_PIXELS)


def _always(in_ch: int, out_ch: int, height: int, width: int) -> bool:
    return True


def _never(in_ch: int, out_ch: int, height: int, width: int) -> bool:
    return False


def _grouped_gemm(v: Tensor, weight: Tensor) -> Tensor:
    """bmm(v, filters) as one grouped 1x1 conv: v (G, T, Ci), weight
    (G * Co, Ci, 1, 1) -> (G, T, Co)."""
    groups, tiles, in_ch = v.shape
    x = v.transpose(0, 1).reshape(1, tiles, 1, groups * in_ch)
    y = F.conv2d(to_nchw(x), weight, groups=groups)
    return y.permute(0, 2, 3, 1).reshape(tiles, groups, -1).transpose(0, 1)


def _grouped_filters(weight: Tensor) -> Tensor:
    """Winograd filters (n*n * Co, Ci, 1, 1) for :func:`_grouped_gemm`."""
    filters = winograd_filters(weight)
    n2, in_ch, out_ch = filters.shape
    return filters.transpose(1, 2).reshape(n2 * out_ch, in_ch, 1,
                                           1).contiguous()


def _direct(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return to_nhwc(F.conv2d(to_nchw(x), weight, bias, padding=1))


def _winograd_mkl(x: Tensor, filters: Tensor, bias: Tensor | None) -> Tensor:
    return winograd_conv3x3(x, filters, bias)


def _winograd_onednn(x: Tensor, filters: Tensor,
                     bias: Tensor | None) -> Tensor:
    return winograd_conv3x3(x, filters, bias, _grouped_gemm)


def _packed_filters(weight: Tensor) -> Tensor:
    """A 3x3 conv's weight reordered once into oneDNN's blocked layout."""
    return torch._C._nn.mkldnn_reorder_conv2d_weight(
        weight.to_mkldnn(), [1, 1], [1, 1], [1, 1], 1)


def _direct_packed(x: Tensor, packed: Tensor, bias: Tensor | None) -> Tensor:
    return to_nhwc(torch.ops.mkldnn._convolution_pointwise(
        to_nchw(x), packed, bias, [1, 1], [1, 1], [1, 1], 1, 'none', [],
        ''))


def _linear_onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'none', [],
                                              '')


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return F.linear(x, weight, bias)


def _conv1x1(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return to_nhwc(
        F.conv2d(to_nchw(x.contiguous()), weight[:, :, None, None], bias))


@dataclass(frozen=True)
class Kernel:
    """One implementation of an op.

    ``run(x, weight, bias)`` computes the op on NHWC ``x`` with the weight
    ``prepare`` derived from the layer's (None: the layer's own weight);
    ``default_for(in_ch, out_ch, height, width)`` says whether it is the
    default for that shape (the first in table order that is wins);
    ``dtypes`` are those it is accurate enough in.
    """

    run: Callable[[Tensor, Tensor, Tensor | None], Tensor]
    prepare: Callable[[Tensor], Tensor] | None = None
    default_for: Callable[[int, int, int, int], bool] = _never
    dtypes: frozenset = frozenset({torch.float32, torch.bfloat16})


#: Winograd in bf16 has about ten times the error of a direct bf16 conv
#: (README, Speed), so only float32 runs it
KERNELS: dict[str, dict[str, Kernel]] = {
    'conv3x3': {
        'winograd_mkl': Kernel(_winograd_mkl, winograd_filters,
                               winograd_pays, frozenset({torch.float32})),
        'winograd_onednn': Kernel(_winograd_onednn, _grouped_filters,
                                  dtypes=frozenset({torch.float32})),
        'direct': Kernel(_direct, default_for=_always),
        'direct_packed': Kernel(_direct_packed, _packed_filters,
                                dtypes=frozenset({torch.bfloat16})),
    },
    'pointwise': {
        'mkl': Kernel(_linear, default_for=_always),
        'onednn': Kernel(_conv1x1),
        'onednn_linear': Kernel(_linear_onednn,
                                dtypes=frozenset({torch.bfloat16})),
    },
}


def _choices(dtype: torch.dtype | None = None) -> str:
    return ', '.join(
        f'{op}: ' + '|'.join(name for name, k in kernels.items()
                             if dtype is None or dtype in k.dtypes)
        for op, kernels in KERNELS.items())


def kernel(op: str, name: str) -> Kernel:
    """The table's entry for ``op`` and ``name``; UnknownKernelError, listing
    the choices, for a name it does not hold."""
    try:
        return KERNELS[op][name]
    except KeyError:
        raise UnknownKernelError(f'unknown kernel {op}={name!r}; the '
                                 f'candidates are {_choices()}') from None


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
                    repeats: int = REPEATS,
                    clock: Callable[[], float] = time.perf_counter
                    ) -> dict[str, float]:
    """Median seconds per call of each candidate by ``clock``, runs
    interleaved."""
    for run in candidates.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for rep in range(repeats):
        for name in (names if rep % 2 == 0 else names[::-1]):
            start = clock()
            candidates[name]()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _covers(cached: object, names: tuple[str, ...]) -> bool:
    """Whether a cached decision chose among exactly ``names`` (a kernel
    added to the table since is measured, not passed over)."""
    return (isinstance(cached, dict) and cached.get('kernel') in names
            and set(cached.get('ms') or ()) == set(names))


def pick(timings: Mapping[str, float], default: str) -> str:
    """The fastest candidate, unless the default is within :data:`MARGIN`."""
    best = min(timings, key=timings.__getitem__)
    if default in timings and timings[best] >= timings[default] * (1 -
                                                                  MARGIN):
        return default
    return best


class KernelChooser:
    """Chooses one kernel of :data:`KERNELS` per op and shape, and keeps it.

    Args:
        measure: time the candidates (True), use the defaults (False), or
            as ``CONVSEG_MEASURE_KERNELS`` says (None: on unless 0).
        force: op -> kernel name, used whatever the measurement would say.
        dtype: the dtype the layers compute in; only the kernels accurate
            enough in it are candidates.
        clock: seconds, for timing the candidates.
    """

    def __init__(self,
                 measure: bool | None = None,
                 force: Mapping[str, str] | None = None,
                 dtype: torch.dtype = torch.float32,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.measure = measuring_enabled(measure)
        self.force = dict(force or {})
        self.clock = clock
        self.candidates = {
            op: tuple(name for name, k in kernels.items() if dtype in k.dtypes)
            for op, kernels in KERNELS.items()
        }
        for op, name in self.force.items():
            kernel(op, name)
            if name not in self.candidates[op]:
                raise UnknownKernelError(
                    f'kernel {op}={name!r} is not accurate enough in '
                    f'{dtype}; the candidates in {dtype} are '
                    f'{_choices(dtype)}')
        self.decisions: dict[str, dict] = {}
        self._unlogged: list[str] = []

    def default(self, op: str, in_ch: int, out_ch: int, height: int,
                width: int) -> str:
        """The first candidate whose ``default_for`` holds for the shape."""
        names = self.candidates[op]
        return next((name for name in names
                     if KERNELS[op][name].default_for(in_ch, out_ch, height,
                                                      width)), names[0])

    def choose(self, op: str, x: Tensor, out_ch: int,
               run: Callable[[str], object]) -> str:
        """The kernel for ``op`` on NHWC ``x`` with ``out_ch`` outputs;
        ``run(name)`` runs a candidate on ``x`` (timed once per shape)."""
        if op in self.force:
            return self.force[op]
        key = f'{op} {shape_key(x, out_ch)}'
        if key in self.decisions:
            return self.decisions[key]['kernel']
        names = self.candidates[op]
        default = self.default(op, x.shape[3], out_ch, *x.shape[1:3])
        entry = dict(kernel=default, source='default')
        if self.measure and len(names) > 1:
            path = cache_file()
            cached = _read_cache(path).get(machine_key(), {}).get(key)
            if _covers(cached, names):
                entry = dict(cached, source='cache')
            else:
                timings = time_candidates(
                    {name: (lambda name=name: run(name)) for name in names},
                    clock=self.clock)
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


def shape_key(x: Tensor, out_ch: int) -> str:
    """'Ci->Co NxHxW dtype' of an NHWC input."""
    batch, height, width, in_ch = x.shape
    dtype = str(x.dtype).replace('torch.', '')
    return f'{in_ch}->{out_ch} {batch}x{height}x{width} {dtype}'


class ChosenKernelLayer(nn.Module):
    """A layer of op :attr:`op` whose kernel ``chooser`` picks per shape.

    Holds ``weight`` as a (derived) buffer, and what each kernel's
    ``prepare`` derives from it, made on first use and kept.
    """

    op = ''

    def __init__(self, weight: Tensor, chooser: KernelChooser) -> None:
        super().__init__()
        self.register_buffer('weight',
                             weight.detach().contiguous(),
                             persistent=False)
        self.chooser = chooser
        self._prepared: dict[tuple, Tensor] = {}

    def run(self, name: str, x: Tensor, bias: Tensor | None) -> Tensor:
        """The op on NHWC ``x`` (+ ``bias``) by kernel ``name``."""
        entry = kernel(self.op, name)
        weight = self.weight
        if entry.prepare is not None:
            key = (name, str(weight.device), weight.dtype)
            if key not in self._prepared:
                self._prepared[key] = entry.prepare(weight)
            weight = self._prepared[key]
        return entry.run(x, weight, bias)

    def kernel_for(self, x: Tensor, bias: Tensor | None = None) -> str:
        """The kernel the call on NHWC ``x`` runs."""
        return self.chooser.choose(self.op, x, self.weight.shape[0],
                                   lambda name: self.run(name, x, bias))


class Conv3x3(ChosenKernelLayer):
    """3x3 conv (stride 1, padding 1) of NHWC maps by the chosen kernel.

    (N, H, W, Ci) -> (N, H, W, Co); ``weight`` (Co, Ci, 3, 3).
    """

    op = 'conv3x3'

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """Convolve x; add ``bias`` (Co,) if given."""
        return self.run(self.kernel_for(x), x, bias)


class Pointwise(ChosenKernelLayer):
    """A 1x1 conv / linear layer of NHWC maps by the chosen kernel.

    (N, H, W, Ci) -> (N, H, W, Co), ``weight`` (Co, Ci), ``bias`` (Co,) or
    None; both are kept as (derived) buffers.
    """

    op = 'pointwise'

    def __init__(self, weight: Tensor, bias: Tensor | None,
                 chooser: KernelChooser) -> None:
        super().__init__(weight, chooser)
        self.register_buffer(
            'bias',
            bias.detach().contiguous() if bias is not None else None,
            persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """The layer on NHWC ``x`` (N, H, W, Ci)."""
        return self.run(self.kernel_for(x, self.bias), x, self.bias)
