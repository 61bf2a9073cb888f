"""Timing and peak memory of benchmark runs, and runs in a process of their
own (so that each variant's memory peak is its own)."""
from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (synchronising the GPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def summary(times: list[float], batch: int) -> dict[str, object]:
    """Median ms per batch and per image, images/s, and all times in ms."""
    median = statistics.median(times)
    return dict(ms_per_batch=round(median * 1e3, 1),
                ms_per_image=round(median * 1e3 / batch, 1),
                images_per_s=round(batch / median, 3),
                times_ms=[round(t * 1e3, 1) for t in times])


def _status_kb(field: str) -> int | None:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory over a block of runs, in MiB.

    GPU: ``torch.cuda.max_memory_allocated`` after a reset. CPU: the peak
    resident set size (VmHWM, reset through /proc/self/clear_refs) and its
    rise over the resident size at the start; where the peak cannot be reset
    it is the process's lifetime peak (getrusage).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> 'PeakMemory':
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        self.resettable = True
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
        except OSError:
            self.resettable = False
        self.start = (_status_kb('VmRSS') or 0) * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        peak_kb = _status_kb('VmHWM') if self.resettable else None
        if peak_kb is None:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak = peak_kb * 1024

    def figures(self) -> dict[str, float]:
        """Peak and rise over the start, in MiB."""
        mib = 1024.0**2
        kind = 'allocated' if self.device.type == 'cuda' else 'rss'
        return {
            f'peak_{kind}_mib': round(self.peak / mib, 1),
            f'peak_{kind}_rise_mib': round((self.peak - self.start) / mib, 1)
        }


def _child(target: Callable, args: tuple, queue: Any) -> None:
    try:
        queue.put(('ok', target(*args)))
    except BaseException as err:  # reported by the parent
        queue.put(('error', f'{type(err).__name__}: {err}'))


#: what the fork server imports before it forks children
FORKSERVER_PRELOAD = ('__main__', 'torch', 'convseg', 'mmseg.models')


def in_subprocess(target: Callable, *args: Any) -> dict:
    """``target(*args)`` in a fresh process (its own memory peak);
    RuntimeError with its error if it failed.

    The process comes from multiprocessing's fork server where the platform
    has one: the server imports the main script's modules once, and each
    call forks a clean child of it (no torch state of the caller's), instead
    of a spawned interpreter importing torch, mmengine and mmseg again
    (about 18 s a call on a 2-vCPU Xeon).
    """
    if 'forkserver' in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context('forkserver')
        # named: the default ('__main__' alone) left torch to each child
        context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    else:
        context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    child = context.Process(target=_child, args=(target, args, queue))
    child.start()
    status, value = queue.get()
    child.join()
    if status != 'ok':
        raise RuntimeError(f'{target.__name__} failed: {value}')
    return value
