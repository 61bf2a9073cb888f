"""What this machine computes in hardware: the CPU's model and ISA flags,
native bf16 on the CPU and on CUDA GPUs.

The one home of these checks: the fast path, the training-speed switches and
the benchmarks all ask here.
"""
from __future__ import annotations

import functools
import inspect
import platform

import torch

#: /proc/cpuinfo flags that mean bf16 arithmetic in hardware
NATIVE_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
#: the first CUDA compute capability with bf16 tensor cores (Ampere)
NATIVE_BF16_CAPABILITY = (8, 0)
#: flags worth printing next to a speed figure
ISA_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile',
             'amx_bf16', 'amx_int8')


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model = platform.processor() or platform.machine()
    flags: frozenset[str] = frozenset()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'model name':
                    model = value.strip()
                elif key == 'flags' and not flags:
                    flags = frozenset(value.split())
                if key == '' and flags:
                    break
    except OSError:
        pass
    return model, flags


def cpu_model() -> str:
    """The CPU's model name (``model name`` in /proc/cpuinfo)."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's ISA flags from /proc/cpuinfo (empty off Linux)."""
    return _cpuinfo()[1]


def isa_summary() -> str:
    """The flags of :data:`ISA_FLAGS` this CPU has, e.g. 'avx2 avx512f'."""
    flags = cpu_flags()
    return ' '.join(f for f in ISA_FLAGS if f in flags) or 'none listed'


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 in hardware (AVX-512 BF16 or AMX).

    Read from /proc/cpuinfo; where that has no flags, from oneDNN's own
    check in torch.
    """
    flags = cpu_flags()
    if flags:
        return any(flag in flags for flag in NATIVE_BF16_FLAGS)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cuda_has_native_bf16(device: torch.device | None = None) -> bool:
    """Whether the CUDA ``device`` (default: the current one) computes bf16
    natively, not by emulation; False without CUDA.

    Asks torch without counting emulation where torch can say so, else
    compares the device's compute capability with 8.0 (Ampere).
    """
    if not torch.cuda.is_available():
        return False
    index = (device.index if device is not None and device.index is not None
             else torch.cuda.current_device())
    check = torch.cuda.is_bf16_supported
    if 'including_emulation' in inspect.signature(check).parameters:
        with torch.cuda.device(index):
            return bool(check(including_emulation=False))
    return torch.cuda.get_device_capability(index) >= NATIVE_BF16_CAPABILITY
