"""The prepared segmentor: an ``EncoderDecoder`` built around a plain one."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from mmengine.structures import PixelData
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.structures import SegDataSample

from .backbone import FastConvNeXt
from .errors import (EDITED_WEIGHTS_ERROR, PREPARED_TRAINING_ERROR,
                     STALE_WEIGHTS_ERROR)
from .kernels import KernelChooser
from .postprocess import (original_size, predictions, resize_logits,
                          restore_logits, single_window_logits)
from .uper_head import FastUPerHead


class WeightGuard:
    """Notices in-place changes of a model's parameters and buffers.

    Records each tensor's version counter and storage; :meth:`check` raises
    RuntimeError naming the first one that changed. Edits through
    ``tensor.data`` bypass version counters and are not seen.
    """

    def __init__(self, model: nn.Module) -> None:
        tensors = list(model.named_parameters()) + [
            (name, buf) for name, buf in model.named_buffers()
            if buf is not None
        ]
        self.state = [(name, t, t._version, t.data_ptr())
                      for name, t in tensors]

    def check(self) -> None:
        """Raise if a parameter or buffer changed since construction."""
        for name, tensor, version, pointer in self.state:
            if tensor._version != version or tensor.data_ptr() != pointer:
                raise RuntimeError(EDITED_WEIGHTS_ERROR.format(name=name))


class FastEncoderDecoder(EncoderDecoder):
    """An ``EncoderDecoder`` made by :func:`prepare_for_inference`.

    Built around a plain model: it holds the same submodules under the same
    names (the weights are shared, not copied, so its state dict is the
    plain model's) and copies of its settings (``test_cfg``, ``cfg``,
    ``dataset_meta``...). Same inputs and outputs as the plain model in
    ``predict``/``inference``/``tensor`` modes; ``fast_head`` (a
    :class:`FastUPerHead`, or None) stands in for the decode head's forward
    and ``fast_backbone`` (a :class:`FastConvNeXt`, or None) for the
    backbone's; ``fast_amp`` (a dtype or None) runs them under autocast,
    ``fast_channels_last`` feeds the backbone channels-last images; the
    fast head runs in its own dtype (float32, or bfloat16 for bf16).
    Training, loading weights, and inference after the weights changed in
    place raise a RuntimeError. ``inference`` runs a single sliding window
    as one ``encode_decode`` and ``postprocess_result`` resizes no logits
    to the size they have: the same results as mmseg's, without those
    full-resolution passes (:mod:`.postprocess`).
    """

    def __init__(self,
                 model: EncoderDecoder,
                 fast_head: FastUPerHead | None,
                 amp: torch.dtype | None,
                 channels_last: bool,
                 fast_backbone: FastConvNeXt | None = None,
                 chooser: KernelChooser | None = None) -> None:
        BaseSegmentor.__init__(self,
                               data_preprocessor=model.data_preprocessor)
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model._parameters.items():
            self.register_parameter(name, param)
        for name, value in vars(model).items():
            if not name.startswith('_') and name != 'training':
                setattr(self, name, copy.deepcopy(value))
        self.fast_head = fast_head
        self.fast_backbone = fast_backbone
        self.fast_amp = amp
        self.fast_channels_last = channels_last
        self.kernel_chooser = chooser
        self.weight_guard = WeightGuard(model)
        self.eval()

    def extract_feat(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's (and neck's) maps of images (N, C, H, W)."""
        if self.fast_backbone is None:
            return super().extract_feat(inputs)
        feats = self.fast_backbone(self.backbone, inputs)
        return self.neck(feats) if self.with_neck else feats

    def _fast_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError(PREPARED_TRAINING_ERROR)
        self.weight_guard.check()
        if self.fast_channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(inputs.device.type,
                            dtype=self.fast_amp,
                            enabled=self.fast_amp is not None):
            feats = self.extract_feat(inputs)
            if self.fast_head is None:
                logits = self.decode_head.forward(feats)
        if self.fast_head is not None:
            # in the fast head's own dtype, which autocast would change
            logits = self.fast_head(feats)
        if self.kernel_chooser is not None:
            self.kernel_chooser.log_new()
        return logits.float()

    def encode_decode(self, inputs: torch.Tensor,
                      batch_img_metas: list[dict]) -> torch.Tensor:
        """Logits (N, num_classes, H, W) of images (N, C, H, W)."""
        return self.decode_head.predict_by_feat(self._fast_logits(inputs),
                                                batch_img_metas)

    def inference(self, inputs: torch.Tensor,
                  batch_img_metas: list[dict]) -> torch.Tensor:
        """Logits (N, num_classes, H, W) by ``test_cfg.mode``, as mmseg's
        ``inference``; one sliding window runs as one ``encode_decode``."""
        logits = single_window_logits(self, inputs, batch_img_metas)
        if logits is None:
            logits = super().inference(inputs, batch_img_metas)
        return logits

    def postprocess_result(self,
                           seg_logits: torch.Tensor,
                           data_samples: list | None = None) -> list:
        """mmseg's ``SegDataSample`` results (``pred_sem_seg`` and
        ``seg_logits`` at each image's original size, as mmseg's
        ``postprocess_result``), without resizing logits to the size they
        already have."""
        if data_samples is None:
            data_samples = [SegDataSample() for _ in seg_logits]
            metas = [None] * len(seg_logits)
        else:
            metas = [sample.metainfo for sample in data_samples]
        for sample, logits, meta in zip(data_samples, seg_logits, metas):
            if meta is not None:
                logits = resize_logits(restore_logits(logits, meta),
                                       original_size(meta),
                                       self.align_corners)
            pred, kept = predictions(self, logits)
            sample.set_data({
                'seg_logits': PixelData(data=kept),
                'pred_sem_seg': PixelData(data=pred)
            })
        return data_samples

    def _forward(self,
                 inputs: torch.Tensor,
                 data_samples: list | None = None) -> torch.Tensor:
        return self._fast_logits(inputs)

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        """Refuse: a prepared model is for inference only."""
        raise RuntimeError(PREPARED_TRAINING_ERROR)

    def load_state_dict(self, *args, **kwargs) -> nn.Module:
        """Refuse: the fast weights were derived from the weights at hand."""
        raise RuntimeError(STALE_WEIGHTS_ERROR)
