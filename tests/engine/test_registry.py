"""convseg.registry lists where convseg's parts register: every registration
that ``import convseg`` makes, and nothing else."""
from __future__ import annotations

import sys

import mmengine.registry
import mmseg.registry
from mmengine.fileio.backends.registry_utils import backends
from mmengine.registry import Registry
from mmengine.runner import CheckpointLoader

import convseg  # noqa: F401
from convseg.compat import MMCV_OP_TYPES
from convseg.registry import CHECKPOINT_SCHEMES, FILE_BACKENDS, REGISTERED


def ours(entries: dict) -> list[str]:
    """The names in ``entries`` whose object a convseg module defines."""
    return sorted(name for name, value in entries.items()
                  if getattr(value, '__module__', '').startswith('convseg.'))


def test_every_listed_part_is_in_its_mmseg_registry():
    for registry_name, types in REGISTERED.items():
        registry = getattr(mmseg.registry, registry_name)
        for name in types:
            assert registry.get(name) is not None, (registry_name, name)


def test_every_convseg_part_in_an_mmseg_registry_is_listed():
    found = {name: ours(registry.module_dict)
             for name, registry in vars(mmseg.registry).items()
             if isinstance(registry, Registry)}
    assert {name: parts for name, parts in found.items() if parts} == {
        name: sorted(types) for name, types in REGISTERED.items()}


def test_mmengine_root_registries_hold_only_the_listed_op_stand_ins():
    found = {name: ours(registry.module_dict)
             for name, registry in vars(mmengine.registry).items()
             if isinstance(registry, Registry)}
    assert {name: parts for name, parts in found.items() if parts} == {}
    lite = getattr(sys.modules.get('mmcv.ops'), '__convseg_lite__', False)
    stand_ins = sorted(
        name for name, cls in mmengine.registry.MODELS.module_dict.items()
        if cls.__module__ == 'mmcv.ops' and lite)
    assert stand_ins == (sorted(MMCV_OP_TYPES) if lite else [])


def test_file_backends_and_checkpoint_schemes_are_listed():
    assert ours(backends) == sorted(FILE_BACKENDS)
    assert ours(CheckpointLoader._schemes) == sorted(CHECKPOINT_SCHEMES)


def test_every_convseg_hook_is_listed_and_has_a_module_in_the_package():
    hooks = {name: cls for name, cls in mmseg.registry.HOOKS.module_dict.items()
             if cls.__module__.startswith('convseg.')}
    assert sorted(hooks) == sorted(REGISTERED['HOOKS'])
    modules = {cls.__module__ for cls in hooks.values()}
    assert len(modules) == len(hooks)  # one hook per module
    assert all(m.startswith('convseg.engine.hooks.') and m.endswith('_hook')
               for m in modules)
