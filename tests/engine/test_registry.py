"""convseg.registry lists where convseg's parts register."""
from __future__ import annotations

import mmseg.registry

import convseg  # noqa: F401
from convseg.registry import REGISTERED


def test_every_listed_part_is_in_its_mmseg_registry():
    for registry_name, types in REGISTERED.items():
        registry = getattr(mmseg.registry, registry_name)
        for name in types:
            assert registry.get(name) is not None, (registry_name, name)


def test_every_convseg_hook_is_listed_and_has_a_module_in_the_package():
    hooks = {name: cls for name, cls in mmseg.registry.HOOKS.module_dict.items()
             if cls.__module__.startswith('convseg.')}
    assert sorted(hooks) == sorted(REGISTERED['HOOKS'])
    modules = {cls.__module__ for cls in hooks.values()}
    assert len(modules) == len(hooks)  # one hook per module
    assert all(m.startswith('convseg.engine.hooks.') for m in modules)

