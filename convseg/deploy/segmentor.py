"""The segmentor every deployment backend runs behind.

:class:`GraphSegmentor` is an mmseg ``EncoderDecoder`` whose
``encode_decode`` hands RGB 0..255 images to an exported graph (see
:mod:`convseg.deploy.contract`), so everything built on a segmentor's
``inference`` (whole and slide modes, :func:`convseg.apis.inference_model`,
the demos, ``tools/test.py``, ``tools/benchmark.py``) runs it unchanged. It
keeps the config's data preprocessor, so it takes the same normalised inputs
as the PyTorch model; ``encode_decode`` turns them back into the images the
graph takes (the graph normalises them again). A backend subclass sets
``input_shape`` and ``num_classes`` and implements :meth:`run_graph`.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.segmentors.base import BaseSegmentor

from ..dataset_meta import config_dataset_meta, resolve_dataset_meta
from .contract import head_threshold
from .errors import OnnxInputError

Segmentor = TypeVar('Segmentor', bound='GraphSegmentor')


class GraphSegmentor(EncoderDecoder):
    """An ``EncoderDecoder`` whose logits come from an exported graph.

    ``cfg`` is the model's config (its data preprocessor, ``test_cfg`` and
    test pipeline are used); ``path`` the graph's file. A graph exported
    for one input size only takes that size (use it as the slide crop size,
    or export with ``dynamic``); a fixed batch size is filled up or split.
    Inference only.
    """

    #: what the file is called in messages, e.g. 'an ONNX graph'
    kind = 'an exported graph'

    def __init__(self, path: str | os.PathLike, cfg: Config) -> None:
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        BaseSegmentor.__init__(
            self, data_preprocessor=copy.deepcopy(cfg.model.data_preprocessor))
        self.path = os.fspath(path)
        self.test_cfg = copy.deepcopy(cfg.model.get('test_cfg'))
        self.train_cfg = None
        self.input_shape: list[Any] = [None, 3, None, None]

    def set_classes(self, num_classes: int, cfg: Config) -> None:
        """Set the head attributes mmseg's inference reads."""
        head = cfg.model.get('decode_head') or {}
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.align_corners = bool(head.get('align_corners', False))
        self.decode_head = SimpleNamespace(
            num_classes=num_classes, out_channels=num_classes,
            threshold=head_threshold(SimpleNamespace(**head)),
            align_corners=self.align_corners)
        self.eval()

    def file_metadata(self) -> dict[str, Any]:
        """Classes and palette stored in the file ({} if none)."""
        return {}

    def run_graph(self, images: np.ndarray) -> np.ndarray:
        """Logits (N, C, H, W) of RGB 0..255 float32 ``images`` of the
        graph's batch size."""
        raise NotImplementedError

    def _graph_images(self, inputs: torch.Tensor) -> np.ndarray:
        """RGB 0..255 images from the data preprocessor's output."""
        pre = self.data_preprocessor
        if getattr(pre, '_enable_normalize', False):
            inputs = inputs * pre.std + pre.mean
        if not getattr(pre, 'channel_conversion', False):
            inputs = inputs.flip(1)
        return np.ascontiguousarray(inputs.float().cpu().numpy())

    def _check_size(self, images: np.ndarray) -> None:
        want = self.input_shape[2:]
        got = list(images.shape[2:])
        if any(isinstance(w, int) and w != g for w, g in zip(want, got)):
            raise OnnxInputError(
                f'{self.path} was exported for {want[0]}x{want[1]} images '
                f'and this input is {got[0]}x{got[1]}: export with '
                f'--dynamic, or use slide inference with crop_size '
                f'({want[0]}, {want[1]}), or resize to {want[0]}x{want[1]} '
                'in the test pipeline')

    def encode_decode(self, inputs: torch.Tensor,
                      batch_img_metas: list[dict]) -> torch.Tensor:
        """Logits (N, num_classes, H, W) of preprocessed (N, 3, H, W)."""
        images = self._graph_images(inputs)
        self._check_size(images)
        count = images.shape[0]
        step = self.input_shape[0] if isinstance(self.input_shape[0],
                                                 int) else count
        outputs = []
        for start in range(0, count, step):
            chunk = images[start:start + step]
            filled = np.concatenate(
                [chunk] + [chunk[-1:]] * (step - len(chunk)))
            outputs.append(self.run_graph(filled)[:len(chunk)])
        return torch.from_numpy(np.concatenate(outputs)).to(inputs.device)

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        """Refuse: an exported graph does not train."""
        raise RuntimeError(f'{self.path} is {self.kind} for inference; '
                           'train the PyTorch model')


def load_config(config: str | Path | Config,
                cfg_options: dict | None = None) -> Config:
    """``config`` (a file, or a ``Config``, copied) with ``cfg_options``
    merged in."""
    cfg = (Config.fromfile(os.fspath(config))
           if isinstance(config, (str, Path)) else copy.deepcopy(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def finish_graph_model(model: Segmentor, cfg: Config, backend: str,
                       device: str) -> Segmentor:
    """Set ``dataset_meta`` (from the file's metadata, else the config's
    test dataset) and ``cfg`` as ``init_model`` does; log what runs."""
    model.dataset_meta = resolve_dataset_meta(
        model.num_classes, model.file_metadata(), config_dataset_meta(cfg))
    model.cfg = cfg
    print_log(f'running {model.path} with {backend} on {device}',
              logger='current', level=logging.INFO)
    return model.to(device)
