"""OpenVINO as an inference backend for ``.xml`` files written by
:func:`convseg.deploy.openvino_export.export_openvino`.

:class:`OvSegmentor` runs such a file where a PyTorch segmentor is expected
(see :mod:`convseg.deploy.segmentor`). The file keeps the ONNX export's
contract (:mod:`convseg.deploy.contract`); classes, palette and the
inference precision it was exported for are in its ``rt_info`` under
``convseg``. OpenVINO's CPU plugin picks bf16 by itself on CPUs with native
bf16, so the precision hint is always set explicitly: ``fp32`` (``f32``) or
``bf16``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.config import Config

from ..hardware import cpu_has_native_bf16, cpu_model
from .contract import INPUT_NAME, OUTPUT_NAMES, parse_metadata
from .errors import DeployError, OnnxInputError, require
from .segmentor import GraphSegmentor, finish_graph_model, load_config

PRECISIONS = {'fp32': 'f32', 'bf16': 'bf16'}
RT_INFO_SECTION = 'convseg'
RT_INFO_KEYS = ('classes', 'palette', 'precision')


def openvino() -> Any:
    """The ``openvino`` module, or :class:`MissingDeployPackageError`."""
    return require('openvino', 'openvino')


def check_precision(precision: str) -> str:
    """``precision`` if OpenVINO can run it on this CPU, else DeployError."""
    if precision not in PRECISIONS:
        raise DeployError(f'precision {precision!r} is not one of '
                          f'{", ".join(PRECISIONS)}')
    if precision == 'bf16' and not cpu_has_native_bf16():
        raise DeployError(f'precision bf16: this CPU ({cpu_model()}) has no '
                          'native bf16 (avx512_bf16 or AMX); use fp32')
    return precision


def read_rt_info(model: Any) -> dict[str, str]:
    """convseg's entries (classes, palette, precision) of an ``ov.Model``'s
    ``rt_info``."""
    return {key: model.get_rt_info([RT_INFO_SECTION, key]).astype(str)
            for key in RT_INFO_KEYS
            if model.has_rt_info([RT_INFO_SECTION, key])}


def read_openvino_model(path: str | os.PathLike) -> Any:
    """The ``ov.Model`` of an ``.xml`` file (its ``.bin`` beside it)."""
    ov = openvino()
    path = os.fspath(path)
    if not path.lower().endswith('.xml'):
        raise OnnxInputError(f'{path} is not an OpenVINO .xml file; write '
                             'one with tools/export_openvino.py')
    weights = path[:-4] + '.bin'
    for needed in (path, weights):
        if not os.path.isfile(needed):
            raise FileNotFoundError(
                f'OpenVINO file {needed} does not exist; write {path} and '
                'its .bin with tools/export_openvino.py')
    try:
        return ov.Core().read_model(path, weights)
    except RuntimeError as err:
        raise OnnxInputError(f'{path} is not an OpenVINO model that '
                             f'OpenVINO can read: {err}') from err


def compile_openvino(model: Any, precision: str = 'fp32',
                     device: str = 'cpu') -> Any:
    """``model`` (an ``ov.Model``) compiled for this CPU with ``precision``
    as the inference precision hint and torch's thread count."""
    if torch.device(device).type != 'cpu':
        raise DeployError(f'device {device}: convseg runs OpenVINO on cpu '
                          'only')
    check_precision(precision)
    return openvino().Core().compile_model(model, 'CPU', {
        'INFERENCE_PRECISION_HINT': PRECISIONS[precision],
        'INFERENCE_NUM_THREADS': torch.get_num_threads(),
        'PERFORMANCE_HINT': 'LATENCY'})


def _static(dim: Any) -> int | None:
    return dim.get_length() if dim.is_static else None


class OvSegmentor(GraphSegmentor):
    """A :class:`~convseg.deploy.segmentor.GraphSegmentor` running an
    OpenVINO ``.xml`` file on the CPU; ``precision`` None takes the one the
    file was exported for (fp32 if it names none). ``model``, an
    ``ov.Model`` in memory, runs instead of the file (``path`` then only
    names it in messages)."""

    kind = 'an OpenVINO model'

    def __init__(self, path: str | os.PathLike, cfg: Config,
                 precision: str | None = None, device: str = 'cpu',
                 model: Any = None) -> None:
        super().__init__(path, cfg)
        if model is None:
            model = read_openvino_model(path)
        names = (model.inputs[0].get_any_name(),
                 model.outputs[0].get_any_name())
        if names != (INPUT_NAME, OUTPUT_NAMES[0]):
            raise OnnxInputError(
                f'{path} takes {names[0]!r} and gives {names[1]!r} first; '
                'convseg runs models written by tools/export_openvino.py '
                '(image -> logits, labels)')
        self.rt_info = read_rt_info(model)
        self.precision = precision or self.rt_info.get('precision', 'fp32')
        self.input_shape = [_static(d)
                            for d in model.inputs[0].get_partial_shape()]
        self.set_classes(_static(model.outputs[0].get_partial_shape()[1]),
                         cfg)
        self.compiled = compile_openvino(model, self.precision, device)

    def file_metadata(self) -> dict[str, Any]:
        """Classes and palette from the file's ``rt_info``."""
        return parse_metadata(self.rt_info)

    def run_graph(self, images: np.ndarray) -> np.ndarray:
        """Logits of ``images`` from OpenVINO."""
        return np.array(self.compiled(images)[self.compiled.outputs[0]])


def init_openvino_model(config: str | Path | Config,
                        path: str | os.PathLike, device: str | None = None,
                        cfg_options: dict | None = None,
                        precision: str | None = None) -> OvSegmentor:
    """:class:`OvSegmentor` of ``path`` with the model config ``config``
    (a file or a ``Config``, copied; ``cfg_options`` merged in);
    ``dataset_meta`` and ``cfg`` as ``init_model`` sets them."""
    device = device or 'cpu'
    cfg = load_config(config, cfg_options)
    model = OvSegmentor(path, cfg, precision, device)
    return finish_graph_model(model, cfg, f'OpenVINO ({model.precision})',
                              device)
