"""The machine a benchmark ran on: CPU, ISA flags, threads, load, GPU."""
from __future__ import annotations

import os

import torch

from ..hardware import cpu_model, isa_summary


def machine_info(device: torch.device) -> dict[str, object]:
    """CPU model and ISA flags, cores, threads, load, torch version, GPU
    name if any."""
    info = dict(cpu=cpu_model(),
                isa=isa_summary(),
                cores=os.cpu_count(),
                torch_threads=torch.get_num_threads(),
                torch=torch.__version__,
                loadavg=load_average())
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages, or None off Linux."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
