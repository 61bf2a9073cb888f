"""One base class for convseg's errors; tools add the flag to the remedy."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import convseg
from convseg.cli import run_tool
from convseg.errors import ConvsegError


def convseg_exception_classes() -> dict[str, type]:
    """Every exception class defined in a convseg module."""
    found = {}
    for info in pkgutil.walk_packages(convseg.__path__, 'convseg.'):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == info.name):
                found[f'{info.name}.{name}'] = value
    return found


def test_every_convseg_error_derives_from_the_base():
    classes = convseg_exception_classes()
    assert 'convseg.checkpoint_reading.UnsafeCheckpointError' in classes
    assert len(classes) >= 16
    assert sorted(name for name, cls in classes.items()
                  if not issubclass(cls, ConvsegError)) == []


def test_run_tool_prints_the_tool_hint_after_the_message(capsys):
    class Full(ConvsegError, OSError):
        tool_hint = 'With tools/train.py, add --resume.'

    def main():
        raise Full(28, 'could not save checkpoint x.pth: the disk is full.')

    assert run_tool(main) == 1
    assert capsys.readouterr().err == (
        'error: [Errno 28] could not save checkpoint x.pth: the disk is '
        'full. With tools/train.py, add --resume.\n')


def test_run_tool_keeps_the_traceback_of_other_errors():
    def main():
        raise KeyError('a bug')

    with pytest.raises(KeyError):
        run_tool(main)
