"""onnxruntime as an inference backend for files written by
:func:`convseg.deploy.export.export_onnx`.

:class:`OrtSegmentor` is an mmseg ``EncoderDecoder`` whose ``encode_decode``
runs the ONNX graph, so everything built on a segmentor's ``inference``
(whole and slide modes, :func:`convseg.apis.inference_model`, the demos,
``tools/benchmark.py``) runs it unchanged. It keeps the config's data
preprocessor, so it takes the same normalised inputs as the PyTorch model;
``encode_decode`` turns them back into the RGB 0..255 images the graph
takes (the graph normalises them again).
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.segmentors.base import BaseSegmentor

from .errors import DeployError, OnnxInputError, require
from .export import INPUT_NAME, OUTPUT_NAMES, head_threshold, parse_metadata

BACKENDS = ('pytorch', 'onnxruntime')


def uses_onnxruntime(checkpoint: str | os.PathLike | None,
                     backend: str | None) -> bool:
    """Whether ``init_model`` should build an :class:`OrtSegmentor`:
    ``backend`` if given ('pytorch' or 'onnxruntime'), else an ``.onnx``
    checkpoint suffix."""
    is_onnx = checkpoint is not None and str(checkpoint).lower().endswith(
        '.onnx')
    if backend is None:
        return is_onnx
    if backend not in BACKENDS:
        raise DeployError(f'backend {backend!r} is not one of '
                          f'{", ".join(BACKENDS)}')
    if (backend == 'onnxruntime') != is_onnx:
        raise DeployError(
            f'backend {backend} needs '
            + ('an .onnx file (write one with tools/export_onnx.py)'
               if backend == 'onnxruntime' else 'a PyTorch checkpoint')
            + f', got {checkpoint}')
    return is_onnx


def resolve_device(device: str | None) -> str:
    """``device``, or for None ``cuda`` when both torch and onnxruntime
    have CUDA, else ``cpu``."""
    if device is not None:
        return device
    cuda = 'CUDAExecutionProvider' in require(
        'onnxruntime').get_available_providers()
    return 'cuda' if cuda and torch.cuda.is_available() else 'cpu'


def ort_session(path: str | os.PathLike, device: str | None = 'cpu') -> Any:
    """An onnxruntime ``InferenceSession`` of ``path`` on ``device`` (cpu,
    cuda[:N], or None: :func:`resolve_device`) using as many threads as
    torch."""
    ort = require('onnxruntime')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'ONNX file {path} does not exist')
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    kind = torch.device(resolve_device(device))
    if kind.type == 'cpu':
        providers: list = ['CPUExecutionProvider']
    elif 'CUDAExecutionProvider' in ort.get_available_providers():
        providers = [('CUDAExecutionProvider',
                      dict(device_id=kind.index or 0))]
    else:
        raise DeployError(
            f'device {device}: this onnxruntime has no CUDA provider; '
            'install onnxruntime-gpu or run on cpu')
    try:
        return ort.InferenceSession(os.fspath(path), options,
                                    providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/Invalid*
        raise OnnxInputError(f'{path} is not an ONNX file onnxruntime can '
                             f'load: {err}') from err


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Classes and palette stored in an exported file ({} if none)."""
    session = ort_session(path)
    return parse_metadata(session.get_modelmeta().custom_metadata_map)


class OrtSegmentor(EncoderDecoder):
    """An ``EncoderDecoder`` that computes its logits with onnxruntime.

    ``cfg`` is the model's config (its data preprocessor, ``test_cfg`` and
    test pipeline are used); ``path`` an ONNX file from
    :func:`~convseg.deploy.export.export_onnx`. A graph exported for one
    input size only takes that size (use it as the slide crop size, or
    export with ``dynamic``); a fixed batch size is filled up or split.
    Inference only.
    """

    def __init__(self, path: str | os.PathLike, cfg: Config,
                 device: str | None = 'cpu') -> None:
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        BaseSegmentor.__init__(
            self, data_preprocessor=copy.deepcopy(cfg.model.data_preprocessor))
        self.path = os.fspath(path)
        self.session = ort_session(path, device)
        graph_input = self.session.get_inputs()[0]
        graph_logits = self.session.get_outputs()[0]
        if (graph_input.name, graph_logits.name) != (INPUT_NAME,
                                                      OUTPUT_NAMES[0]):
            raise OnnxInputError(
                f'{path} takes {graph_input.name!r} and gives '
                f'{graph_logits.name!r} first; convseg runs graphs written '
                'by tools/export_onnx.py (image -> logits, labels)')
        self.input_shape = list(graph_input.shape)
        num_classes = int(graph_logits.shape[1])
        head = cfg.model.get('decode_head') or {}
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.align_corners = bool(head.get('align_corners', False))
        self.decode_head = SimpleNamespace(
            num_classes=num_classes, out_channels=num_classes,
            threshold=head_threshold(SimpleNamespace(**head)),
            align_corners=self.align_corners)
        self.test_cfg = copy.deepcopy(cfg.model.get('test_cfg'))
        self.train_cfg = None
        self.eval()

    def _graph_images(self, inputs: torch.Tensor) -> np.ndarray:
        """RGB 0..255 images from the data preprocessor's output."""
        pre = self.data_preprocessor
        if getattr(pre, '_enable_normalize', False):
            inputs = inputs * pre.std + pre.mean
        if not getattr(pre, 'channel_conversion', False):
            inputs = inputs.flip(1)
        return inputs.float().cpu().numpy()

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
            logits = self.session.run([OUTPUT_NAMES[0]],
                                      {INPUT_NAME: filled})[0]
            outputs.append(logits[:len(chunk)])
        return torch.from_numpy(np.concatenate(outputs)).to(inputs.device)

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict:
        """Refuse: an ONNX graph does not train."""
        raise RuntimeError(f'{self.path} is an ONNX graph for inference; '
                           'train the PyTorch model')


def init_ort_model(config: str | Path | Config, path: str | os.PathLike,
                   device: str | None = None,
                   cfg_options: dict | None = None) -> OrtSegmentor:
    """:class:`OrtSegmentor` of ``path`` with the model config ``config``
    (a file or a ``Config``, copied; ``cfg_options`` merged in) on
    ``device`` (None: :func:`resolve_device`); ``dataset_meta`` (from the
    file's metadata, else the config's test dataset) and ``cfg`` as
    ``init_model`` sets them."""
    device = resolve_device(device)
    from ..apis.inference import config_dataset_meta, resolve_dataset_meta
    cfg = (Config.fromfile(os.fspath(config))
           if isinstance(config, (str, Path)) else copy.deepcopy(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model = OrtSegmentor(path, cfg, device)
    model.dataset_meta = resolve_dataset_meta(
        model.num_classes,
        parse_metadata(model.session.get_modelmeta().custom_metadata_map),
        config_dataset_meta(cfg))
    model.cfg = cfg
    print_log(f'running {path} with onnxruntime on {device}',
              logger='current', level=logging.INFO)
    return model.to(device)
