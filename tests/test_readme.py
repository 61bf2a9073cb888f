"""Keep the README, the pages of docs/ and the tests in step.

The README's two top commands must be the ones CI and ``make`` run; every
other command of README.md or docs/*.md that runs a script of this
repository must name a script that exists, and some test function must run
that script with each of the flags the page shows: the test sources are
parsed, and a flag counts only where one function (a test or a fixture) both
runs the script and passes the flag, not where the flag's string merely
appears in a file. Every relative link of those pages must lead to a file
that exists and, with ``#anchor``, to a heading of it.
"""
from __future__ import annotations

import ast
import functools
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
README_LINES = 150
TEST_FILES = [path for path in (ROOT / 'tests').rglob('*.py')
              if path.name != 'test_readme.py']


def _commands(text: str) -> list[str]:
    """Shell lines of a page's ```bash (or sh, shell, console) blocks,
    continuations joined, ``$ `` prompts dropped."""
    lines = []
    for block in re.findall(r'```(?:bash|sh|shell|console)\n(.*?)```', text,
                            flags=re.S):
        block = block.replace('\\\n', ' ')
        for line in block.splitlines():
            line = line.strip().removeprefix('$ ')
            if line and not line.startswith('#'):
                lines.append(line)
    return lines


def _page_name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _script_and_flags(command: str) -> tuple[str, list[str]] | None:
    """The repository script a command runs and the flags it passes."""
    words = shlex.split(command, comments=True)
    scripts = [w for w in words
               if re.fullmatch(r'(tools|demo)/[\w/]+\.(py|sh)', w)]
    if not scripts:
        return None
    flags = sorted({w.split('=')[0] for w in words if w.startswith('--')})
    return scripts[0], flags


SCRIPT_COMMANDS = [(_page_name(page), c) for page in PAGES
                   for c in _commands(page.read_text())
                   if _script_and_flags(c)]


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
    calls = {f.name: [n for n in ast.walk(f) if isinstance(n, ast.Call)]
             for f in funcs}
    scripts: dict[str, set[str]] = {}
    for func in funcs:
        found = scripts.setdefault(func.name, set())
        for call in calls[func.name]:
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
    # (with the caller's flags), through any chain of helpers
    helpers = {f.name: {c.func.id for c in calls[f.name]
                        if isinstance(c.func, ast.Name)
                        and c.func.id in scripts} for f in funcs}
    for _ in funcs:
        for func in funcs:
            for helper in helpers[func.name]:
                scripts[func.name] |= scripts[helper]
    runs = []
    for func in funcs:
        flags = {v.split('=')[0] for v in _strings(func)
                 if v.startswith('--')}
        if scripts[func.name]:
            runs.append((f'{filename}::{func.name}', scripts[func.name],
                         flags))
    return runs


@functools.cache
def script_runs() -> list[tuple[str, set[str], set[str]]]:
    """:func:`_script_runs_in` over every test file (read when a test asks,
    not when pytest collects this module)."""
    return [run for path in TEST_FILES
            for run in _script_runs_in(path.read_text(), path.name)]


def test_top_commands_are_the_make_targets_ci_runs():
    top = _commands(README)[:2]
    assert top == ['make quickstart', 'make test']
    ci = (ROOT / '.ci' / 'run').read_text()
    assert re.search(r'^make test$', ci, flags=re.M)
    makefile = (ROOT / 'Makefile').read_text()
    assert re.search(r'^quickstart:', makefile, flags=re.M)
    assert re.search(r'^test:', makefile, flags=re.M)


def test_pages_show_tool_commands():
    scripts = {_script_and_flags(c)[0] for _, c in SCRIPT_COMMANDS}
    for script in ('tools/train.py', 'tools/test.py', 'demo/image_demo.py',
                   'tools/convert_checkpoint.py', 'tools/benchmark.py'):
        assert script in scripts


@pytest.mark.parametrize('page,command', SCRIPT_COMMANDS)
def test_command_is_exercised_by_a_test(page, command):
    script, flags = _script_and_flags(command)
    assert (ROOT / script).is_file(), f'{script} does not exist'
    name = Path(script).name
    users = [(func, passed) for func, scripts, passed in script_runs()
             if name in scripts]
    assert users, f'no test runs {script}'
    missing = [f for f in flags if not any(f in passed for _, passed in users)]
    assert not missing, (f'{page} runs {script} with {missing}, which no '
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


def _without_code_blocks(text: str) -> str:
    """A page without its fenced blocks."""
    return re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)


def _without_code(text: str) -> str:
    """A page without its fenced blocks and inline code spans."""
    return re.sub(r'`[^`\n]*`', '', _without_code_blocks(text))


def _anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation but
    ``-`` and ``_`` dropped, spaces to ``-``; repeats get ``-1``, ``-2``."""
    seen: dict[str, int] = {}
    anchors = set()
    for title in re.findall(r'^#{1,6} +(.+?) *#*$', _without_code_blocks(text),
                            flags=re.M):
        slug = re.sub(r'[^\w\- ]', '', title.replace('`', '').lower())
        slug = slug.replace(' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(f'{slug}-{count}' if count else slug)
    return anchors


def _broken_links(page: Path) -> list[str]:
    """The relative links of a page that lead to no file or no heading."""
    broken = []
    text = page.read_text()
    for target in re.findall(r'\]\(([^)\s]+)(?: "[^"]*")?\)',
                             _without_code(text)):
        if re.match(r'[a-z]+:', target):
            continue
        path, _, anchor = target.partition('#')
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f'{target} (no file {linked})')
        elif anchor and (linked.suffix != '.md' or
                         anchor not in _anchors(linked.read_text())):
            broken.append(f'{target} (no heading #{anchor} in {linked.name})')
    return broken


@pytest.mark.parametrize('page', PAGES, ids=_page_name)
def test_relative_links_resolve(page):
    assert _broken_links(page) == []


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'b.md').write_text(
        '# Train and test\n\n## `--tta`: multi-scale\n\n## Notes\n## Notes\n')
    page = tmp_path / 'a.md'
    page.write_text(
        '# Top\n\nSee [b](docs/b.md), [t](docs/b.md#train-and-test),\n'
        '[tta](docs/b.md#--tta-multi-scale), [n](docs/b.md#notes-1),\n'
        '[top](#top), [web](https://example.org/x.md#y),\n'
        '`[code](missing.md)` and [gone](docs/c.md),\n'
        '[bad anchor](docs/b.md#training).\n\n'
        '```\n[in a block](nowhere.md)\n```\n')
    assert _broken_links(page) == [
        f'docs/c.md (no file {tmp_path / "docs" / "c.md"})',
        'docs/b.md#training (no heading #training in b.md)']


def _linked_pages(page: Path) -> set[Path]:
    """The Markdown files a page links to by a relative link."""
    targets = re.findall(r'\]\(([^)#\s]+\.md)(?:#[^)]*)?\)',
                         _without_code(page.read_text()))
    return {(page.parent / t).resolve() for t in targets
            if not re.match(r'[a-z]+:', t)}


def _reachable(start: Path) -> set[Path]:
    """The pages reached from ``start`` by following relative links."""
    seen, todo = {start}, [start]
    while todo:
        for linked in _linked_pages(todo.pop()) - seen:
            if linked.is_file():
                seen.add(linked)
                todo.append(linked)
    return seen


def test_readme_is_short_and_leads_to_every_docs_page():
    assert len(README.splitlines()) <= README_LINES
    unreached = set(PAGES) - _reachable(PAGES[0])
    assert not unreached, (
        f'{sorted(_page_name(p) for p in unreached)}: no link leads there '
        'from README.md')


def test_pages_are_reached_through_links(tmp_path):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'README.md').write_text('[a](docs/a.md#x) `[c](docs/c.md)`')
    (tmp_path / 'docs' / 'a.md').write_text('[b](b.md) [top](../README.md)')
    for name in ('b', 'c'):
        (tmp_path / 'docs' / f'{name}.md').write_text('# page\n')
    assert _reachable(tmp_path / 'README.md') == {
        tmp_path / 'README.md', tmp_path / 'docs' / 'a.md',
        tmp_path / 'docs' / 'b.md'}
