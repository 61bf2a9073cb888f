"""Keep the README's commands and the tests in step.

The two top commands must be the ones CI and ``make`` run; every other
command of the README that runs a script of this repository must name a
script that exists, and some end-to-end test must run that script with each
of the flags the README shows.
"""
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
TEST_SOURCES = {
    path: path.read_text()
    for path in (ROOT / 'tests').rglob('test_*.py')
    if path.name != 'test_readme.py'
}


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
    users = [p for p, text in TEST_SOURCES.items() if name in text]
    assert users, f'no test runs {script}'
    missing = [f for f in flags
               if not any(f"'{f}'" in TEST_SOURCES[p] or f'"{f}"' in
                          TEST_SOURCES[p] for p in users)]
    assert not missing, (f'README runs {script} with {missing}, which no '
                         f'test that runs {script} passes')
