"""onnxruntime as an inference backend for files written by
:func:`convseg.deploy.export.export_onnx`: :class:`OrtSegmentor` runs such
a file where a PyTorch segmentor is expected (see
:mod:`convseg.deploy.segmentor`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.config import Config

from .contract import INPUT_NAME, OUTPUT_NAMES, parse_metadata
from .errors import DeployError, OnnxInputError, require
from .segmentor import GraphSegmentor, finish_graph_model, load_config


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


class OrtSegmentor(GraphSegmentor):
    """A :class:`~convseg.deploy.segmentor.GraphSegmentor` running an ONNX
    file from :func:`~convseg.deploy.export.export_onnx` with onnxruntime
    on ``device``."""

    kind = 'an ONNX graph'

    def __init__(self, path: str | os.PathLike, cfg: Config,
                 device: str | None = 'cpu') -> None:
        super().__init__(path, cfg)
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
        self.set_classes(int(graph_logits.shape[1]), cfg)

    def file_metadata(self) -> dict[str, Any]:
        """Classes and palette from the file's ``metadata_props``."""
        return parse_metadata(
            self.session.get_modelmeta().custom_metadata_map)

    def run_graph(self, images: np.ndarray) -> np.ndarray:
        """Logits of ``images`` from onnxruntime."""
        return self.session.run([OUTPUT_NAMES[0]], {INPUT_NAME: images})[0]


def init_ort_model(config: str | Path | Config, path: str | os.PathLike,
                   device: str | None = None,
                   cfg_options: dict | None = None) -> OrtSegmentor:
    """:class:`OrtSegmentor` of ``path`` with the model config ``config``
    (a file or a ``Config``, copied; ``cfg_options`` merged in) on
    ``device`` (None: :func:`resolve_device`); ``dataset_meta`` and ``cfg``
    as ``init_model`` sets them."""
    device = resolve_device(device)
    cfg = load_config(config, cfg_options)
    return finish_graph_model(OrtSegmentor(path, cfg, device), cfg,
                              'onnxruntime', device)
