"""What the fast path does on a GPU: mixed precision and memory format.

bf16 autocast where the model's GPU computes bf16 natively, else fp16;
logits come back in float32. This path has not been timed on a GPU.
"""
from __future__ import annotations

import inspect

import torch

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether the GPU ``device`` (not the current one) has native bf16.

    Asks torch without counting emulation where torch can say so, else
    compares the device's compute capability with 8.0 (Ampere).
    """
    index = (device.index
             if device.index is not None else torch.cuda.current_device())
    check = torch.cuda.is_bf16_supported
    if 'including_emulation' in inspect.signature(check).parameters:
        with torch.cuda.device(index):
            return bool(check(including_emulation=False))
    return torch.cuda.get_device_capability(index) >= (8, 0)


def default_gpu_amp(device: torch.device) -> str:
    """'bf16' on a GPU with native bf16, else 'fp16'."""
    return 'bf16' if native_bf16(device) else 'fp16'
