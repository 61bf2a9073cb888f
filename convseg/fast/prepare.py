"""prepare_for_inference: the face of the fast path."""
from __future__ import annotations

import logging
from typing import Mapping

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmseg.models.decode_heads import UPerHead
from mmseg.models.segmentors import EncoderDecoder

from convseg import hardware
from convseg.models.pointwise_fuse_head import PointwiseFuseUPerHead

from . import gpu
from .backbone import FastConvNeXt
from .errors import (TRAINING_ERROR, UnsupportedModelError,
                     UnsupportedPrecisionError)
from .kernels import KernelChooser
from .segmentor import FastEncoderDecoder
from .uper_head import FastUPerHead

PRECISIONS = ('fp32', 'bf16')


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device('cpu')


def check_precision(precision: str, device: torch.device) -> None:
    """Raise UnsupportedPrecisionError (a ValueError) unless ``precision``
    runs natively on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32' or 'bf16', got "
                         f'{precision!r}')
    if precision == 'fp32':
        return
    if device.type == 'cpu' and not hardware.cpu_has_native_bf16():
        raise UnsupportedPrecisionError(
            f"precision='bf16' needs a CPU with native bf16 arithmetic "
            f"(the avx512_bf16 or amx_bf16 flag), and this one "
            f'({hardware.cpu_model()}) has neither: emulated bf16 is slower '
            f"than float32. Use precision='fp32'.")
    if device.type == 'cuda' and not hardware.cuda_has_native_bf16(device):
        raise UnsupportedPrecisionError(
            f"precision='bf16' needs a GPU with native bf16 (compute "
            f'capability 8.0 or newer), and {device} is not one. Use '
            f"precision='fp32'.")


def prepare_for_inference(model: nn.Module,
                          enable: bool = True,
                          *,
                          precision: str = 'fp32',
                          kernels: Mapping[str, str] | None = None,
                          measure: bool | None = None,
                          amp: str | None = None,
                          channels_last: bool | None = None,
                          compile: bool = False) -> nn.Module:
    """Make an eval-mode ``EncoderDecoder`` compute its logits faster.

    Returns a :class:`FastEncoderDecoder` that shares ``model``'s modules
    (``model`` itself stays a plain ``EncoderDecoder``), or ``model``
    untouched with ``enable=False`` or when there is nothing to speed up.
    Prepare after loading weights: loading weights into a prepared model,
    or changing its weights in place, makes its next call raise. Raises
    RuntimeError if the model, or any of its modules, is in training mode.

    Args:
        model: an mmseg ``EncoderDecoder`` in eval mode. Other segmentors,
            and heads the fast head does not cover, are left unchanged
            (with a warning) unless a GPU option applies.
        enable: False returns the model as it is.
        precision: 'fp32', or 'bf16' (CPU: the backbone under bf16
            autocast and the fast head in bf16; GPU: bf16 autocast). bf16
            needs native hardware support and raises ValueError without;
            logits come back as float32 either way.
        kernels: CPU: force a kernel per op, e.g.
            ``{'conv3x3': 'winograd_onednn', 'pointwise': 'mkl'}``; see
            :data:`convseg.fast.kernels.KERNELS` for the choices (bf16
            runs no Winograd kernel). An unknown name raises
            UnknownKernelError listing them.
        measure: CPU: time the candidate kernels once per shape (cached
            on disk) and keep the fastest; False uses the defaults; None
            (default) unless ``CONVSEG_MEASURE_KERNELS=0``.
        amp: 'bf16' or 'fp16' autocast without the fast head (logits come
            back as float32), or 'none'. Default: 'bf16' on a GPU with
            native bf16, else 'fp16'; 'none' on CPU.
        channels_last: feed the backbone channels-last images and store its
            weights so. Default: on for GPU, off for CPU (no gain measured).
        compile: ``torch.compile`` the backbone (in place).
    """
    if not enable:
        return model
    if any(module.training for module in model.modules()):
        raise RuntimeError(TRAINING_ERROR)
    if isinstance(model, FastEncoderDecoder):
        print_log('the model is already prepared for inference',
                  logger='current',
                  level=logging.INFO)
        return model
    if type(model) is not EncoderDecoder:
        print_log(
            f'no fast inference path for a {type(model).__name__} '
            '(only mmseg EncoderDecoder); leaving the model unchanged',
            logger='current',
            level=logging.WARNING)
        return model
    device = _model_device(model)
    check_precision(precision, device)
    on_gpu = device.type == 'cuda'
    if amp is None:
        if on_gpu:
            amp = 'bf16' if precision == 'bf16' else gpu.default_gpu_amp(
                device)
        else:
            amp = 'none'
    if amp != 'none' and amp not in gpu.AMP_DTYPES:
        raise ValueError(f"amp must be 'bf16', 'fp16' or 'none', got "
                         f'{amp!r}')
    if channels_last is None:
        channels_last = on_gpu
    bf16_cpu = precision == 'bf16' and device.type == 'cpu'
    if bf16_cpu:
        amp = 'bf16'
    chooser = KernelChooser(measure, kernels,
                            torch.bfloat16 if bf16_cpu else torch.float32)
    fast_head = fast_backbone = None
    notes = []
    if device.type == 'cpu' and (amp == 'none' or bf16_cpu):
        dtype = torch.bfloat16 if bf16_cpu else torch.float32
        try:
            head = model.decode_head
            if type(head) not in (UPerHead, PointwiseFuseUPerHead):
                raise UnsupportedModelError(
                    f'the decode head is a {type(head).__name__}')
            fast_head = FastUPerHead(head, chooser).to(device, dtype)
            notes.append('UPerHead with folded BatchNorm, 3x3 convs by '
                         'measured kernels and resized parts at their own '
                         'resolution')
        except UnsupportedModelError as err:
            print_log(f'no fast head: {err}; the decode head runs as it is',
                      logger='current',
                      level=logging.WARNING)
        try:
            if fast_head is not None:
                fast_backbone = FastConvNeXt(model.backbone,
                                             chooser).to(device, dtype)
                notes.append('ConvNeXt pointwise layers by measured kernels')
        except UnsupportedModelError as err:
            print_log(f'no fast backbone: {err}; it runs as it is',
                      logger='current',
                      level=logging.INFO)
    if amp != 'none':
        notes.append(f'{amp} ' + ('backbone autocast, bf16 head'
                                  if bf16_cpu and fast_head else 'autocast'))
    if channels_last:
        model.backbone.to(memory_format=torch.channels_last)
        notes.append('channels-last')
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        notes.append('cudnn.benchmark')
    if compile:
        model.backbone.compile()
        notes.append('torch.compile (backbone)')
    if not notes:
        print_log(
            'nothing to speed up on this model and device; leaving it '
            'unchanged',
            logger='current',
            level=logging.WARNING)
        return model
    fast = FastEncoderDecoder(model, fast_head, gpu.AMP_DTYPES.get(amp),
                              channels_last, fast_backbone, chooser)
    print_log('fast inference: ' + ', '.join(notes),
              logger='current',
              level=logging.INFO)
    return fast
