"""Write a UPerNet segmentor as an OpenVINO model and check it.

:func:`convert_to_openvino` goes through the ONNX export
(:func:`convseg.deploy.export.export_onnx`, into a temporary folder) and
``openvino.convert_model`` (:func:`onnx_to_openvino`, which also converts
an exported file), so the ``.xml`` keeps the ONNX graph's contract:
``image`` RGB 0..255 in, ``logits`` and ``labels`` out, any batch and size
with ``dynamic``. Classes, palette and the precision hint go into the
model's ``rt_info`` under ``convseg``. :func:`save_openvino` writes the
``.xml`` and ``.bin`` atomically (the ``.bin`` first, the ``.xml`` that
refers to it last); :func:`compare_with_openvino` measures the file against
PyTorch.
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import torch
from mmengine.logging import print_log
from mmseg.models.segmentors import EncoderDecoder

from ..fileio import atomic_write
from .contract import OUTPUT_NAMES, compare_outputs, metadata_strings
from .errors import OnnxInputError
from .export import export_onnx
from .openvino_runtime import (RT_INFO_SECTION, check_precision,
                               compile_openvino, openvino,
                               read_openvino_model)


def convert_to_openvino(model: EncoderDecoder,
                        shape: tuple[int, int] = (512, 512), batch: int = 1,
                        dynamic: bool = False) -> Any:
    """``model`` as an ``ov.Model`` (through its ONNX export at ``shape``
    and ``batch``, or any size with ``dynamic``), with the model's
    ``dataset_meta`` classes and palette in its ``rt_info``."""
    openvino()  # the missing extra is named before the export runs
    with tempfile.TemporaryDirectory(prefix='convseg-openvino-') as folder:
        onnx_path = os.path.join(folder, 'model.onnx')
        export_onnx(model, onnx_path, shape, batch=batch, dynamic=dynamic)
        return onnx_to_openvino(onnx_path,
                                getattr(model, 'dataset_meta', None) or {})


def onnx_to_openvino(onnx_path: str | os.PathLike, meta: dict) -> Any:
    """An ONNX file of :func:`~convseg.deploy.export.export_onnx` as an
    ``ov.Model`` (``openvino.convert_model``), with ``meta``'s classes and
    palette in its ``rt_info``."""
    converted = openvino().convert_model(os.fspath(onnx_path))
    names = [output.get_any_name() for output in converted.outputs]
    if tuple(names) != OUTPUT_NAMES:
        raise OnnxInputError(f'openvino.convert_model gave outputs {names}; '
                             f'expected {list(OUTPUT_NAMES)}')
    for key, value in metadata_strings(meta).items():
        converted.set_rt_info(value, [RT_INFO_SECTION, key])
    return converted


def save_openvino(ov_model: Any, path: str | os.PathLike,
                  precision: str = 'fp32') -> str:
    """Write ``ov_model`` (weights in fp32, not compressed) to ``path``
    (``.xml``) and its ``.bin``, atomically, with ``precision`` as the hint
    :class:`~convseg.deploy.openvino_runtime.OvSegmentor` compiles it with;
    returns ``path``."""
    ov = openvino()
    path = os.fspath(path)
    if not path.lower().endswith('.xml'):
        raise OnnxInputError(f'{path}: an OpenVINO model is written as an '
                             '.xml file (and a .bin beside it); name the '
                             'output OUT.xml')
    ov_model.set_rt_info(check_precision(precision),
                         [RT_INFO_SECTION, 'precision'])
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix='.convseg-openvino-',
                                     dir=folder) as staging:
        staged = os.path.join(staging, 'model.xml')
        ov.save_model(ov_model, staged, compress_to_fp16=False)
        with atomic_write(path[:-4] + '.bin') as tmp:
            os.replace(staged[:-4] + '.bin', tmp)
        with atomic_write(path) as tmp:
            os.replace(staged, tmp)
    print_log(f'wrote {path} and its .bin', logger='current',
              level=logging.INFO)
    return path


def compare_with_openvino(model: EncoderDecoder, path: str | os.PathLike,
                          images: torch.Tensor, precision: str = 'fp32'
                          ) -> dict[str, float]:
    """Run the ``.xml`` file with OpenVINO (``precision`` hint) and the
    PyTorch model on RGB 0..255 ``images``:
    :func:`~convseg.deploy.contract.compare_outputs`."""
    compiled = compile_openvino(read_openvino_model(path), precision)
    outputs = compiled(images.float().numpy())
    return compare_outputs(model, images, outputs[compiled.outputs[0]],
                           outputs[compiled.outputs[1]])
