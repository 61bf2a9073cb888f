"""What the fast path does on a GPU: mixed precision and memory format.

bf16 autocast where the model's GPU computes bf16 natively, else fp16;
logits come back in float32. This path has not been timed on a GPU.
"""
from __future__ import annotations

import torch

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def default_gpu_amp(device: torch.device) -> str:
    """'bf16' on a GPU with bf16 support, else 'fp16'."""
    return 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
