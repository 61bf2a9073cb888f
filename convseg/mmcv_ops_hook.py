"""Start-up import hook: mmseg imports on mmcv-lite without ``import convseg``.

mmsegmentation imports ``mmcv.ops`` while it is itself being imported, and on
mmcv-lite (no compiled ``mmcv._ext``) that import fails, so a process that
has not imported convseg first cannot even reach a config's
``custom_imports``. :func:`install_pth` writes a one-line ``.pth`` start-up
file into the interpreter's site-packages (``tools/install.sh`` calls it);
at every start-up that line runs :func:`install`, which puts
:class:`MmcvOpsFinder` on ``sys.meta_path``. The finder answers for
``mmcv.ops``, and only when ``mmcv._ext`` is missing; it then installs
convseg's stand-in (:func:`convseg.compat.install_mmcv_ops_shim`).
Set ``CONVSEG_MMCV_OPS_HOOK=0`` to switch it off. Can go with the shim.

This module imports only the standard library at start-up, and the finder
imports ``convseg.compat`` without running the package's ``__init__``: the
package imports mmseg, which at that moment is half imported. So
``compat.py`` (and what it imports from convseg) must not import mmseg at
its top level.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import types

ENV = 'CONVSEG_MMCV_OPS_HOOK'
PTH_NAME = 'convseg_mmcv_ops_hook.pth'
TARGET = 'mmcv.ops'


def hook_enabled() -> bool:
    """Whether the hook may act (``CONVSEG_MMCV_OPS_HOOK`` is not ``0``)."""
    return os.environ.get(ENV, '1') != '0'


#: the bare ``convseg`` package module of :func:`_compat`, until the package
#: itself is imported into it
_pending_package: list[types.ModuleType] = []


def _compat() -> types.ModuleType:
    """``convseg.compat``, imported without running ``convseg/__init__.py``.

    While the package is not imported, a bare ``convseg`` package module
    (its ``__path__`` only) stands in for it during the import of
    ``convseg.compat`` and of what that imports (``convseg.errors``). It then
    leaves ``sys.modules``; a later ``import convseg`` runs the package's
    ``__init__`` in that same module object (:class:`MmcvOpsFinder` answers
    for ``convseg`` once), so its submodules stay loaded and stay its
    attributes.
    """
    if 'convseg.compat' in sys.modules or 'convseg' in sys.modules:
        return importlib.import_module('convseg.compat')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.machinery.PathFinder.find_spec('convseg', [root])
    bare = importlib.util.module_from_spec(spec)
    sys.modules['convseg'] = bare
    try:
        return importlib.import_module('convseg.compat')
    finally:
        if sys.modules.get('convseg') is bare:
            del sys.modules['convseg']
            _pending_package.append(bare)


class _StandInLoader(importlib.abc.Loader):
    """Loads ``mmcv.ops`` as convseg's stand-in."""

    def create_module(self, spec: importlib.machinery.ModuleSpec
                      ) -> types.ModuleType:
        _compat().install_mmcv_ops_shim(force=True)
        return sys.modules[TARGET]

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the stand-in is complete when created."""


class _PackageLoader(importlib.abc.Loader):
    """Runs ``convseg/__init__.py`` in the module :func:`_compat` made."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.package_loader = module.__spec__.loader

    def create_module(self, spec: importlib.machinery.ModuleSpec
                      ) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        """Run the package's own ``__init__`` code."""
        self.package_loader.exec_module(module)


class MmcvOpsFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder answering for ``mmcv.ops`` without ``mmcv._ext``
    (and, after that, once for ``convseg`` itself: see :func:`_compat`)."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        """A spec for the stand-in, or None to let the usual finders look."""
        if fullname == 'convseg' and _pending_package:
            bare = _pending_package.pop()
            spec = importlib.machinery.ModuleSpec(
                'convseg', _PackageLoader(bare), origin=bare.__spec__.origin,
                is_package=True)
            spec.submodule_search_locations = list(bare.__path__)
            return spec
        if fullname != TARGET or not hook_enabled():
            return None
        if importlib.util.find_spec('mmcv._ext') is not None:
            return None
        return importlib.machinery.ModuleSpec(TARGET, _StandInLoader())


def install() -> None:
    """Put one :class:`MmcvOpsFinder` at the front of ``sys.meta_path``."""
    if not any(type(f).__name__ == MmcvOpsFinder.__name__
               and type(f).__module__ == MmcvOpsFinder.__module__
               for f in sys.meta_path):
        sys.meta_path.insert(0, MmcvOpsFinder())


def pth_line(hook_file: str | None = None) -> str:
    """The ``.pth`` line that loads this file and calls :func:`install`.

    It does nothing if the file is gone (convseg uninstalled or moved).
    """
    hook_file = os.path.abspath(hook_file or __file__)
    return (
        'import os, importlib.util as u; '
        f'p = {hook_file!r}; '
        's = os.path.isfile(p) and u.spec_from_file_location('
        "'convseg.mmcv_ops_hook', p); "
        'm = s and u.module_from_spec(s); '
        "s and (__import__('sys').modules.setdefault(s.name, m), "
        's.loader.exec_module(m), m.install())\n')


def install_pth(site_dir: str | None = None) -> str:
    """Write the start-up file into ``site_dir`` (default: site-packages).

    Returns the path written.
    """
    from convseg.fileio import atomic_write_text

    target = os.path.join(site_dir or sysconfig.get_paths()['purelib'],
                          PTH_NAME)
    atomic_write_text(pth_line(), target)
    return target


def main(argv: list[str] | None = None) -> None:
    """``python -m convseg.mmcv_ops_hook [--site-dir DIR]``: write the file."""
    parser = argparse.ArgumentParser(
        description='Install the start-up hook that lets mmseg import on '
        'mmcv-lite in processes that have not imported convseg.')
    parser.add_argument('--site-dir', help='where to write the .pth file '
                        '(default: this interpreter\'s site-packages)')
    args = parser.parse_args(argv)
    print(f'wrote {install_pth(args.site_dir)}')


if __name__ == '__main__':
    main()
