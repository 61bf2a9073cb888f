"""Inference fast path for UPerNet segmentors.

:func:`prepare_for_inference` turns an eval-mode mmseg ``EncoderDecoder``
into a :class:`FastEncoderDecoder` that computes the same logits faster. It
is for inference only: it refuses a model in training mode, and the prepared
model refuses to train and to load weights.

On CPU (float32, or bfloat16 with ``precision='bf16'`` where the CPU has
native bf16) the decode head, an mmseg ``UPerHead``, is replaced in the
forward pass by :class:`FastUPerHead`. One module per technique:

* :mod:`.folding`: BatchNorm folded into the preceding conv of every
  ConvModule;
* :mod:`.winograd`: 3x3 convs by Winograd's minimal filtering F(4x4, 3x3),
  2.25 multiplications per output instead of 9, as GEMMs;
* :mod:`.kernels`: the kernel table, and which kernel runs each conv or
  GEMM, chosen by timing the candidates on this CPU (cached on disk);
* :mod:`.backbone`: ConvNeXt's pointwise layers through those kernels;
* :mod:`.resize_conv`: a 3x3 conv of upsampled, concatenated maps without
  upsampling or concatenating them;
* :mod:`.nhwc`: channels-last maps throughout, so 1x1 convs are GEMMs;
* :mod:`.uper_head`: the UPerHead forward pass built from those;
* :mod:`.segmentor`: the prepared model, sharing the plain model's modules
  (its state dict is the plain model's; the derived weights are not saved);
* :mod:`.postprocess`: from logits to mmseg's results without the
  full-resolution passes that change no value (a single slide window's
  bookkeeping, resizing to the same size), also used by :mod:`convseg.apis`;
* :mod:`.gpu`: on GPU, mixed precision (logits in float32), channels-last,
  ``cudnn.benchmark`` and optionally ``torch.compile`` of the backbone.

The measurements behind each piece are in docs/speed.md.
"""
from .errors import (UnknownKernelError, UnsupportedModelError,
                     UnsupportedPrecisionError)
from .kernels import KERNELS, Kernel, KernelChooser
from .prepare import PRECISIONS, check_precision, prepare_for_inference
from .segmentor import FastEncoderDecoder

__all__ = [
    'prepare_for_inference', 'check_precision', 'PRECISIONS',
    'FastEncoderDecoder', 'KERNELS', 'Kernel', 'KernelChooser',
    'UnknownKernelError', 'UnsupportedModelError', 'UnsupportedPrecisionError'
]
