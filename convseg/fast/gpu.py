"""What the fast path does on a GPU: mixed precision and memory format.

bf16 autocast where the model's GPU computes bf16 natively, else fp16;
logits come back in float32. This path has not been timed on a GPU.
"""
from __future__ import annotations

import torch

from convseg.hardware import cuda_has_native_bf16

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def default_gpu_amp(device: torch.device) -> str:
    """'bf16' on a GPU with native bf16, else 'fp16'."""
    return 'bf16' if cuda_has_native_bf16(device) else 'fp16'
