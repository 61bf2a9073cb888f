"""prepare_for_inference: the face of the fast path."""
from __future__ import annotations

import logging

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmseg.models.decode_heads import UPerHead
from mmseg.models.segmentors import EncoderDecoder

from .errors import TRAINING_ERROR, UnsupportedModelError
from .gpu import AMP_DTYPES, default_gpu_amp
from .segmentor import FastEncoderDecoder
from .uper_head import FastUPerHead


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device('cpu')


def prepare_for_inference(model: nn.Module,
                          enable: bool = True,
                          *,
                          winograd: bool | None = None,
                          amp: str | None = None,
                          channels_last: bool | None = None,
                          compile: bool = False) -> nn.Module:
    """Make an eval-mode ``EncoderDecoder`` compute its logits faster.

    Returns a :class:`FastEncoderDecoder` that shares ``model``'s modules
    (``model`` itself stays a plain ``EncoderDecoder``), or ``model``
    untouched with ``enable=False`` or when there is nothing to speed up.
    Prepare after loading weights: loading weights into a prepared model
    raises. Raises RuntimeError if the model, or any of its modules, is in
    training mode.

    Args:
        model: an mmseg ``EncoderDecoder`` in eval mode. Other segmentors,
            and heads the fast head does not cover, are left unchanged
            (with a warning) unless a GPU option applies.
        enable: False returns the model as it is.
        winograd: CPU float32 only: True runs every 3x3 conv of the head by
            Winograd, False none, None (default) where
            :func:`~.kernels.winograd_pays` for the call's shape.
        amp: 'bf16' or 'fp16' autocast (logits come back as float32), or
            'none'. Default: 'bf16' on a GPU that supports it, else 'fp16';
            'none' on CPU. With autocast the fp32 fast head is not used.
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
    on_gpu = device.type == 'cuda'
    if amp is None:
        amp = default_gpu_amp(device) if on_gpu else 'none'
    if amp != 'none' and amp not in AMP_DTYPES:
        raise ValueError(f"amp must be 'bf16', 'fp16' or 'none', got "
                         f'{amp!r}')
    if channels_last is None:
        channels_last = on_gpu
    fast_head = None
    notes = []
    head = model.decode_head
    if amp == 'none' and device.type == 'cpu':
        try:
            if type(head) is not UPerHead:
                raise UnsupportedModelError(
                    f'the decode head is a {type(head).__name__}')
            fast_head = FastUPerHead(head, winograd).to(device)
            notes.append('UPerHead with folded BatchNorm, Winograd 3x3 convs '
                         f'({"by shape" if winograd is None else winograd}) '
                         'and resized parts at their own resolution')
        except UnsupportedModelError as err:
            print_log(f'no fast head: {err}; the decode head runs as it is',
                      logger='current',
                      level=logging.WARNING)
    if amp != 'none':
        notes.append(f'{amp} autocast')
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
    fast = FastEncoderDecoder(model, fast_head, AMP_DTYPES.get(amp),
                              channels_last)
    print_log('fast inference: ' + ', '.join(notes),
              logger='current',
              level=logging.INFO)
    return fast
