"""Channels-last (NHWC) views and resizing shared by the fast layers."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> contiguous (N, H, W, C), a view of channels-last x."""
    return x.permute(0, 2, 3, 1).contiguous()


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) -> (N, C, H, W) view in channels-last memory format."""
    return x.permute(0, 3, 1, 2)


def resize(x: torch.Tensor, size: Sequence[int],
           align_corners: bool) -> torch.Tensor:
    """Bilinear resizing of NHWC maps to ``size`` (H, W), as mmseg's resize."""
    return to_nhwc(
        F.interpolate(to_nchw(x),
                      size=tuple(size),
                      mode='bilinear',
                      align_corners=align_corners))
