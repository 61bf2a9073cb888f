"""Which backend runs a checkpoint: PyTorch, onnxruntime or OpenVINO.

``init_model`` asks :func:`choose_backend` and, for an exported file,
:func:`init_deployed_model` builds the segmentor that runs it.
"""
from __future__ import annotations

import os
from pathlib import Path

from mmengine.config import Config

from .errors import DeployError
from .openvino_runtime import init_openvino_model
from .runtime import init_ort_model
from .segmentor import GraphSegmentor

#: backend -> (file suffix, what the error asks for)
BACKENDS = {
    'pytorch': (None, 'a PyTorch checkpoint'),
    'onnxruntime': ('.onnx', 'an .onnx file (write one with '
                    'tools/export_onnx.py)'),
    'openvino': ('.xml', 'an OpenVINO .xml file (write one with '
                 'tools/export_openvino.py)'),
}


def _file_backend(checkpoint: str | os.PathLike | None) -> str:
    name = '' if checkpoint is None else str(checkpoint).lower()
    for backend, (suffix, _) in BACKENDS.items():
        if suffix is not None and name.endswith(suffix):
            return backend
    return 'pytorch'


def choose_backend(checkpoint: str | os.PathLike | None,
                   backend: str | None) -> str:
    """``backend`` if given and it fits the file, else the one the
    checkpoint's suffix names (``.onnx``: onnxruntime, ``.xml``: openvino,
    anything else: pytorch)."""
    found = _file_backend(checkpoint)
    if backend is None:
        return found
    if backend not in BACKENDS:
        raise DeployError(f'backend {backend!r} is not one of '
                          f'{", ".join(BACKENDS)}')
    if backend != found:
        raise DeployError(f'backend {backend} needs {BACKENDS[backend][1]}'
                          f', got {checkpoint}')
    return backend


def init_deployed_model(backend: str, config: str | Path | Config,
                        path: str | os.PathLike, device: str | None = None,
                        cfg_options: dict | None = None,
                        precision: str | None = None) -> GraphSegmentor:
    """The segmentor running the exported ``path`` with ``backend``
    (onnxruntime or openvino; ``precision`` is OpenVINO's hint, None: the
    file's)."""
    if backend == 'onnxruntime':
        if precision not in (None, 'fp32'):
            raise DeployError(f'precision {precision} is for the PyTorch '
                              'fast path and OpenVINO; onnxruntime runs '
                              'the graph in fp32')
        return init_ort_model(config, path, device, cfg_options)
    return init_openvino_model(config, path, device, cfg_options, precision)
