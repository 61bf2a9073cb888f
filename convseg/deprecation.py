"""Old import paths of names that moved, kept for one release.

A module whose public names moved ends with
``__getattr__ = moved_names(__name__, {'name': 'new.module', ...})``; reading
such a name from the old module returns the object from its new home and
warns with a ``DeprecationWarning`` that names the new path.
"""
from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping


def moved_names(old_module: str,
                new_homes: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that forwards ``new_homes``' names."""

    def __getattr__(name: str) -> object:
        if name not in new_homes:
            raise AttributeError(
                f'module {old_module!r} has no attribute {name!r}')
        new_module = new_homes[name]
        warnings.warn(
            f'{old_module}.{name} has moved to {new_module}.{name}; import '
            f'it from there (the old path goes away in the next release).',
            DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new_module), name)

    return __getattr__
