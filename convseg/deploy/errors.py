"""Errors of convseg.deploy and the check for its optional packages."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import ConvsegError

INSTALL_HINT = 'pip install -e ".[deploy]"'
OPENVINO_INSTALL_HINT = 'pip install -e ".[openvino]"'
#: what needs each extra, and how to install it
EXTRAS = dict(
    deploy=('ONNX export and the onnxruntime backend', INSTALL_HINT),
    openvino=('the OpenVINO backend and its int8 quantization',
              OPENVINO_INSTALL_HINT))


class DeployError(ConvsegError, ValueError):
    """Base of the errors of :mod:`convseg.deploy`."""


class MissingDeployPackageError(DeployError, ImportError):
    """An optional package of the ``deploy`` or ``openvino`` extra is not
    installed."""


class UnsupportedExportError(DeployError):
    """A model, or one of its modules, that cannot be exported to ONNX."""


class OnnxInputError(DeployError):
    """An input that the exported graph does not take (shape, batch,
    file)."""


def require(name: str, extra: str = 'deploy') -> ModuleType:
    """Import ``name`` (onnx, onnxruntime, onnxscript of the ``deploy``
    extra; openvino, nncf of the ``openvino`` extra), or raise
    :class:`MissingDeployPackageError` saying which extra to install."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        purpose, hint = EXTRAS[extra]
        raise MissingDeployPackageError(
            f'{name} is not installed ({err}); {purpose} need the {extra} '
            f'extra: {hint}') from err
