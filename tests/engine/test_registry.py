"""convseg.registry lists where convseg's parts register; hooks moved into
one package and their old import paths still work."""
from __future__ import annotations

import importlib
import warnings

import pytest
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


@pytest.mark.parametrize('old, name, new', [
    ('convseg.engine.lr_logger', 'LrLoggerHook',
     'convseg.engine.hooks.lr_logger'),
    ('convseg.evaluation.progress', 'ProgressBarHook',
     'convseg.engine.hooks.progress_bar'),
    ('convseg.evaluation', 'ProgressBarHook',
     'convseg.engine.hooks.progress_bar'),
])
def test_old_hook_paths_warn_and_work(old, name, new):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)
    assert [str(w.message) for w in caught] == [
        f'{old}.{name} has moved to {new}.{name}; import it from there (the '
        'old path goes away in the next release).']
