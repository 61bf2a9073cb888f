"""What this CPU is: model name, ISA flags, native bf16."""
from __future__ import annotations

import functools
import platform

import torch

#: /proc/cpuinfo flags that mean bf16 arithmetic in hardware
NATIVE_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
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
