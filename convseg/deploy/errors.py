"""Errors of convseg.deploy and the check for its optional packages."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import ConvsegError

INSTALL_HINT = 'pip install -e ".[deploy]"'


class DeployError(ConvsegError, ValueError):
    """Base of the errors of :mod:`convseg.deploy`."""


class MissingDeployPackageError(DeployError, ImportError):
    """An optional package of the ``deploy`` extra is not installed."""


class UnsupportedExportError(DeployError):
    """A model, or one of its modules, that cannot be exported to ONNX."""


class OnnxInputError(DeployError):
    """An input that the ONNX graph does not take (shape, batch, file)."""


def require(name: str) -> ModuleType:
    """Import ``name`` (onnx, onnxruntime, onnxscript), or raise
    :class:`MissingDeployPackageError` saying which extra to install."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise MissingDeployPackageError(
            f'{name} is not installed ({err}); ONNX export and the '
            f'onnxruntime backend need the deploy extra: {INSTALL_HINT}'
        ) from err
