"""Keep the README's commands and the tests in step.

The two top commands must be the ones CI and ``make`` run; every other
command of the README that runs a script of this repository must name a
script that exists, and some test function must run that script with each
of the flags the README shows: the test sources are parsed, and a flag
counts only where one function (a test or a fixture) both runs the script
and passes the flag, not where the flag's string merely appears in a file.
"""
from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
TEST_FILES = [path for path in (ROOT / 'tests').rglob('*.py')
              if path.name != 'test_readme.py']


def _commands() -> list[str]:
    """Shell lines of the README's ```bash blocks, continuations joined."""
    lines = []
    for block in re.findall(r'```bash\n(.*?)```', README, flags=re.S):
        block = block.replace('\\\n', ' ')
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith('#'):
                lines.append(line)
    return lines


def _script_and_flags(command: str) -> tuple[str, list[str]] | None:
    """The repository script a command runs and the flags it passes."""
    words = shlex.split(command, comments=True)
    scripts = [w for w in words
               if re.fullmatch(r'(tools|demo)/[\w/]+\.(py|sh)', w)]
    if not scripts:
        return None
    flags = sorted({w.split('=')[0] for w in words if w.startswith('--')})
    return scripts[0], flags


SCRIPT_COMMANDS = [c for c in _commands() if _script_and_flags(c)]


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _names_of_scripts(tree: ast.Module) -> dict[str, str]:
    """Module-level names bound to a script path: ``{'TRAIN': 'train.py'}``
    for ``TRAIN = str(TOOLS / 'train.py')`` (tuple assignments too)."""
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = ([(target, node.value)] if isinstance(target, ast.Name)
                     else list(zip(target.elts, node.value.elts))
                     if isinstance(target, ast.Tuple) and
                     isinstance(node.value, ast.Tuple) else [])
            for name, value in pairs:
                scripts = [v.rsplit('/', 1)[-1] for v in _strings(value)
                           if re.search(r'\.(py|sh)$', v)]
                if isinstance(name, ast.Name) and len(scripts) == 1:
                    found[name.id] = scripts[0]
    return found


def _script_runs_in(source: str, filename: str
                    ) -> list[tuple[str, set[str], set[str]]]:
    """(function, scripts it runs, flags it passes) of each top-level
    function of a test source that runs a script.

    A function runs a script when one of its calls names the script in its
    arguments: its file name or path (``'tools/train.py'``, ``TOOLS /
    'dist_test.sh'``), a module-level name bound to it, or its stem given to
    a loader (``_load_demo('image_demo')``); or when it calls a function of
    the same module that runs it. Its flags are the ``--...`` strings in its
    body.
    """
    tree = ast.parse(source)
    names = _names_of_scripts(tree)
    funcs = [f for f in tree.body if isinstance(f, ast.FunctionDef)]
    scripts: dict[str, set[str]] = {}
    for func in funcs:
        found = scripts.setdefault(func.name, set())
        for call in (n for n in ast.walk(func) if isinstance(n, ast.Call)):
            for arg in call.args:
                for node in ast.walk(arg):
                    if isinstance(node, ast.Name) and node.id in names:
                        found.add(names[node.id])
                for value in _strings(arg):
                    name = value.rsplit('/', 1)[-1]
                    if re.fullmatch(r'\w+\.(py|sh)', name):
                        found.add(name)
                    elif re.fullmatch(r'[a-z]+_[a-z_]+', value):
                        found.add(f'{value}.py')
    # a function that calls a helper of its module runs what the helper runs
    # (with the caller's flags)
    for _ in funcs:
        for func in funcs:
            for call in (n for n in ast.walk(func) if isinstance(n, ast.Call)):
                if isinstance(call.func, ast.Name) and call.func.id in scripts:
                    scripts[func.name] |= scripts[call.func.id]
    runs = []
    for func in funcs:
        flags = {v.split('=')[0] for v in _strings(func)
                 if v.startswith('--')}
        if scripts[func.name]:
            runs.append((f'{filename}::{func.name}', scripts[func.name],
                         flags))
    return runs


SCRIPT_RUNS = [run for path in TEST_FILES
               for run in _script_runs_in(path.read_text(), path.name)]


def test_top_commands_are_the_make_targets_ci_runs():
    top = _commands()[:2]
    assert top == ['make quickstart', 'make test']
    ci = (ROOT / '.ci' / 'run').read_text()
    assert re.search(r'^make test$', ci, flags=re.M)
    makefile = (ROOT / 'Makefile').read_text()
    assert re.search(r'^quickstart:', makefile, flags=re.M)
    assert re.search(r'^test:', makefile, flags=re.M)


def test_readme_shows_tool_commands():
    scripts = {_script_and_flags(c)[0] for c in SCRIPT_COMMANDS}
    for script in ('tools/train.py', 'tools/test.py', 'demo/image_demo.py',
                   'tools/convert_checkpoint.py', 'tools/benchmark.py'):
        assert script in scripts


@pytest.mark.parametrize('command', SCRIPT_COMMANDS)
def test_readme_command_is_exercised_by_a_test(command):
    script, flags = _script_and_flags(command)
    assert (ROOT / script).is_file(), f'{script} does not exist'
    name = Path(script).name
    users = [(func, passed) for func, scripts, passed in SCRIPT_RUNS
             if name in scripts]
    assert users, f'no test runs {script}'
    missing = [f for f in flags if not any(f in passed for _, passed in users)]
    assert not missing, (f'README runs {script} with {missing}, which no '
                         f'test function that runs {script} passes')


def test_a_flag_counts_only_where_the_script_is_run():
    """The parser itself: a function's flags go to the scripts it runs,
    also through a helper it calls; a function that runs no script passes
    no flag to any."""
    source = (
        "TEST = str(TOOLS / 'test.py')\n"
        "def test_a():\n"
        "    run(['bash', TOOLS / 'dist_test.sh', config, '--out', out])\n"
        "def test_b():\n"
        "    run([sys.executable, TEST, config, '--tta'])\n"
        "def helper_only_mentions():\n"
        "    flags = ['--show-dir']\n"
        "def _bench(*flags):\n"
        "    run_script('tools/benchmark.py', '--json', *flags)\n"
        "def test_c():\n"
        "    _bench('--precision', 'bf16')\n")
    assert _script_runs_in(source, 'x.py') == [
        ('x.py::test_a', {'dist_test.sh'}, {'--out'}),
        ('x.py::test_b', {'test.py'}, {'--tta'}),
        ('x.py::_bench', {'benchmark.py'}, {'--json'}),
        ('x.py::test_c', {'benchmark.py'}, {'--precision'})]
