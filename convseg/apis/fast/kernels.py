"""Which kernel runs each 3x3 conv of the fast head.

:class:`Conv3x3` convolves NHWC maps either directly (``F.conv2d``, oneDNN
on CPU) or by Winograd (:mod:`.winograd`); ``winograd=None`` picks per call
by :func:`winograd_pays`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .nhwc import to_nchw, to_nhwc
from .winograd import winograd_conv3x3, winograd_filters

#: the shape rule: Winograd for both channel counts at least this and maps
#: of at least this many pixels (the README's Speed section has the figures)
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_PIXELS = 16 * 16


def winograd_pays(in_ch: int, out_ch: int, height: int, width: int) -> bool:
    """The shape rule: Winograd for this conv when measuring is off."""
    return (min(in_ch, out_ch) >= WINOGRAD_MIN_CHANNELS
            and height * width >= WINOGRAD_MIN_PIXELS)


class Conv3x3(nn.Module):
    """3x3 conv (stride 1, padding 1) of NHWC maps, by Winograd where it pays.

    (N, H, W, Ci) -> (N, H, W, Co). ``winograd``: True always, False never,
    None per call by :func:`winograd_pays`. The transformed filters are
    made on first use (per device) and kept.
    """

    def __init__(self, weight: torch.Tensor, winograd: bool | None) -> None:
        super().__init__()
        self.register_buffer('weight',
                             weight.detach().contiguous(),
                             persistent=False)
        self.winograd = winograd
        self._filters: dict[tuple, torch.Tensor] = {}

    def uses_winograd(self, x: torch.Tensor) -> bool:
        """Whether the call on NHWC ``x`` goes through Winograd."""
        if self.winograd is None:
            return winograd_pays(x.shape[3], self.weight.shape[0],
                                 *x.shape[1:3])
        return self.winograd

    def forward(self,
                x: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """Convolve x; add ``bias`` (Co,) if given."""
        if not self.uses_winograd(x):
            return to_nhwc(F.conv2d(to_nchw(x), self.weight, bias, padding=1))
        key = (str(self.weight.device), self.weight.dtype)
        if key not in self._filters:
            self._filters[key] = winograd_filters(self.weight)
        return winograd_conv3x3(x, self._filters[key], bias)
