"""convseg's layers import only downward, without cycles, and the data layer
never loads the inference front or deployment."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: the packages a data-side import must not load
FRONT_PREFIXES = ('convseg.apis', 'convseg.fast', 'convseg.deploy')


#: imported in this order by one fresh interpreter (importing a submodule
#: imports the package first, so the order changes nothing that each would
#: load alone)
PROBED = ('convseg', 'convseg.datasets', 'convseg.apis')


@pytest.fixture(scope='module')
def loaded_front_modules() -> dict[str, list[str]]:
    """For each of :data:`PROBED`, the front modules loaded once it is
    imported, in one fresh interpreter (which also checks that the base
    image module loaded)."""
    probe = ('import importlib, json, sys\n'
             'seen = {}\n'
             f'for module in {PROBED!r}:\n'
             '    importlib.import_module(module)\n'
             '    seen[module] = sorted(name for name in sys.modules\n'
             f'        if name.startswith({FRONT_PREFIXES!r}))\n'
             'print(json.dumps(seen))\n'
             'assert "convseg.imageio" in sys.modules')
    done = subprocess.run([sys.executable, '-c', probe], cwd=REPO_ROOT,
                          capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize('module', ['convseg', 'convseg.datasets'])
def test_the_data_side_loads_no_inference_or_deploy_module(
        module, loaded_front_modules):
    assert loaded_front_modules[module] == []


def test_the_probe_sees_front_modules_when_they_load(loaded_front_modules):
    assert 'convseg.apis.inference' in loaded_front_modules['convseg.apis']


# ---------------------------------------------------------------------------
# the layer table, checked on every import in the package
# ---------------------------------------------------------------------------

PACKAGE = REPO_ROOT / 'convseg'

#: module prefix -> layer; a module takes the layer of its longest prefix.
#: A module may import from lower layers, and from its own layer without a
#: cycle. compat sits in layer 1: it installs checkpoint_reading's
#: weights-only loaders in mmengine's CheckpointLoader.
LAYERS = {
    'convseg.errors': 0, 'convseg.fileio': 0, 'convseg.imageio': 0,
    'convseg.hardware': 0, 'convseg.mmcv_ops_hook': 0, 'convseg.registry': 0,
    'convseg.checkpoint_reading': 1, 'convseg.compat': 1,
    'convseg.visualization': 1, 'convseg.plots': 1, 'convseg.dataset_meta': 1,
    'convseg.models': 2, 'convseg.datasets': 2, 'convseg.evaluation': 2,
    'convseg.engine': 3, 'convseg.fast': 3,
    'convseg.deploy': 3, 'convseg.benchmarks': 3,
    'convseg.apis': 4, 'convseg.cli': 4, 'convseg.warm_fork': 4,
    # the package itself imports its layers to register their parts
    'convseg': 5,
}


def module_name(path: Path) -> str:
    """The dotted name of a module file of the package."""
    parts = path.relative_to(REPO_ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob('*.py'))}


def convseg_imports(name: str, path: Path,
                    modules: dict[str, Path]) -> set[str]:
    """The convseg modules that ``name`` imports anywhere in its file
    (function bodies included), relative imports resolved, ``from x import
    y`` naming the submodule ``x.y`` where there is one."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = '.'.join(anchor + ([base] if base else []))
            targets = [f'{base}.{alias.name}'
                       if f'{base}.{alias.name}' in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition('.')[0]
            if target and target != name:
                found.add(target)
    return found


def layer_of(name: str) -> int:
    """The layer of module ``name`` (longest matching prefix)."""
    prefixes = [p for p in LAYERS if name == p or name.startswith(p + '.')]
    if not prefixes:
        raise AssertionError(f'{name} is in no layer of LAYERS; add it')
    return LAYERS[max(prefixes, key=len)]


def import_graph() -> dict[str, set[str]]:
    """importer -> the convseg modules it imports."""
    modules = package_modules()
    return {name: convseg_imports(name, path, modules)
            for name, path in modules.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'importer (layer a) -> imported (layer b)' for each import of a
    higher layer."""
    return sorted(
        f'{importer} (layer {layer_of(importer)}) -> {imported} '
        f'(layer {layer_of(imported)})'
        for importer, targets in graph.items() for imported in targets
        if layer_of(imported) > layer_of(importer))


def import_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each cycle among modules as 'a -> b -> a' (Tarjan's strongly
    connected components)."""
    edges = {name: sorted(targets) for name, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                members = sorted(component)
                cycles.append(f'cycle among {", ".join(members)}: '
                              f'{cycle_path(members, edges)}')

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return sorted(cycles)


def cycle_path(component: list[str], edges: dict[str, list[str]]) -> str:
    """One closed path through ``component``, from its first module."""
    start = component[0]
    members = set(component)
    path, seen = [start], {start}
    while True:
        options = [t for t in edges[path[-1]] if t in members]
        if start in options and len(path) > 1:
            return ' -> '.join(path + [start])
        unseen = [t for t in options if t not in seen]
        if not unseen:
            return ' -> '.join(path + [options[0]])
        path.append(unseen[0])
        seen.add(unseen[0])


def test_every_module_is_in_a_layer():
    assert sorted(name for name in package_modules()
                  if not [p for p in LAYERS
                          if name == p or name.startswith(p + '.')]) == []


def test_the_parser_sees_imports_in_functions_and_relative_ones():
    modules = package_modules()
    compat = convseg_imports('convseg.compat', modules['convseg.compat'],
                             modules)
    # a module-level and a function-level relative import
    assert {'convseg.errors', 'convseg.checkpoint_reading'} <= compat
    assert 'convseg.compat' in convseg_imports(
        'convseg', modules['convseg'], modules)


def test_no_module_imports_a_higher_layer():
    upward = upward_imports(import_graph())
    assert upward == [], 'imports of a higher layer:\n' + '\n'.join(upward)


def test_no_import_cycle_within_a_layer():
    cycles = import_cycles(import_graph())
    assert cycles == [], 'import cycles:\n' + '\n'.join(cycles)


def test_a_cycle_is_named_with_its_path():
    graph = {'convseg.a': {'convseg.b'}, 'convseg.b': {'convseg.c'},
             'convseg.c': {'convseg.a'}, 'convseg.d': {'convseg.a'}}
    assert import_cycles(graph) == [
        'cycle among convseg.a, convseg.b, convseg.c: '
        'convseg.a -> convseg.b -> convseg.c -> convseg.a']
