"""The prepared segmentor: an ``EncoderDecoder`` built around a plain one."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.segmentors.base import BaseSegmentor

from .errors import PREPARED_TRAINING_ERROR, STALE_WEIGHTS_ERROR
from .uper_head import FastUPerHead


class FastEncoderDecoder(EncoderDecoder):
    """An ``EncoderDecoder`` made by :func:`prepare_for_inference`.

    Built around a plain model: it holds the same submodules under the same
    names (the weights are shared, not copied, so its state dict is the
    plain model's) and copies of its settings (``test_cfg``, ``cfg``,
    ``dataset_meta``...). Same inputs and outputs as the plain model in
    ``predict``/``inference``/``tensor`` modes; ``fast_head`` (a
    :class:`FastUPerHead`, or None) stands in for the decode head's forward,
    ``fast_amp`` (a dtype or None) runs the backbone and head under
    autocast, ``fast_channels_last`` feeds the backbone channels-last
    images. Training and loading weights raise a RuntimeError.
    """

    def __init__(self, model: EncoderDecoder, fast_head: FastUPerHead | None,
                 amp: torch.dtype | None, channels_last: bool) -> None:
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
        self.fast_amp = amp
        self.fast_channels_last = channels_last
        self.eval()

    def _fast_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError(PREPARED_TRAINING_ERROR)
        if self.fast_channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(inputs.device.type,
                            dtype=self.fast_amp,
                            enabled=self.fast_amp is not None):
            feats = self.extract_feat(inputs)
            if self.fast_head is not None:
                logits = self.fast_head(feats)
            else:
                logits = self.decode_head.forward(feats)
        return logits.float()

    def encode_decode(self, inputs: torch.Tensor,
                      batch_img_metas: list[dict]) -> torch.Tensor:
        """Logits (N, num_classes, H, W) of images (N, C, H, W)."""
        return self.decode_head.predict_by_feat(self._fast_logits(inputs),
                                                batch_img_metas)

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
