"""Fixtures shared by the whole suite.

- ``repo_root``: the checkout's root folder.
- ``tiny_config``: ``tests/data/tiny_upernet_convnext.py``, the one tiny
  model config that tests inherit from and override.
- ``tiny_train_config``: ``tiny_train_config(path, data_root, **overrides)``
  writes a config that trains the tiny model on an ADE20K-layout dataset
  with the project's base configs (:data:`TINY_TRAIN_CONFIG`), each
  override merged into it as mmengine merges a child config into its base.
- ``dataset``: ``dataset('ade20k' | 'cityscapes' | 'scenes', **params)``
  generates a dataset once per session for each set of parameters and returns
  its root; ``ade20k_root``, ``cityscapes_root`` and ``scenes_root`` are the
  default small ones. Tests that change files in a dataset generate their own
  under ``tmp_path``.
- ``run_script``: runs a tool or demo with this interpreter, from the
  repository root, with one OpenMP thread and unbuffered output: in a fork of
  a warm interpreter (``tests/tool_server.py``, one per pytest process) where
  the run allows it, else as a process; ``CONVSEG_TEST_FORK=0`` runs every
  tool as a process.
- ``rank_group``: runs a tool as the ranks of one process group on this
  machine, with the variables ``torchrun`` sets: forks of the tool server
  where the run allows it, else processes.
- ``quickstart_run``: ``tools/quickstart.py`` run once per session on a
  small setting; its dataset, work dir and trained checkpoint.
- ``png_bomb``: writes a small, valid PNG that declares any size
  (40000x40000 by default).

Tests that run a tool end to end (under ``tests/tools/``, the GPU dry run,
or any test that uses ``run_script``) carry the ``end_to_end`` marker;
``make test-quick`` leaves them out.

At the end of a session the suite fails if a test that this machine can run
was skipped or dropped its variant: the bf16 tests on a CPU whose
/proc/cpuinfo lists ``avx512_bf16`` or ``amx_bf16``, and fused AdamW with a
torch that has it on CPU (2.4 and newer). See :data:`MUST_RUN`.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock
from packaging.version import Version

#: transformers, for the comparisons with Hugging Face's ConvNeXt, lies beside
#: the venv (tools/install.sh --tests), on the path of the test processes only:
#: mmengine imports it at start-up where it can (2.3 s of every tool process)
TRANSFORMERS_DIR = Path(sys.prefix) / 'transformers'
if TRANSFORMERS_DIR.is_dir() and str(TRANSFORMERS_DIR) not in sys.path:
    sys.path.append(str(TRANSFORMERS_DIR))

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO_ROOT / 'tests' / 'data' / 'tiny_upernet_convnext.py'

#: this machine's capabilities, read without the code under test's checks
def cpuinfo_flags() -> set[str]:
    """The ISA flags /proc/cpuinfo lists (none off Linux)."""
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith('flags')
            for flag in line.partition(':')[2].split()}


#: (torch itself is not imported here: the controller process of
#: pytest-xdist runs no test, and importing torch and convseg would cost it
#: about 20 s)
TORCH_VERSION = importlib.metadata.version('torch')
NATIVE_BF16 = bool({'avx512_bf16', 'amx_bf16'} & cpuinfo_flags())
FUSED_ADAMW_ON_CPU = Version(TORCH_VERSION.split('+')[0]) >= Version('2.4')
#: test id -> (whether this machine must run it, the variants it must record
#: with ``record_property('variants', ...)``)
MUST_RUN: dict[str, tuple[bool, frozenset[str]]] = {
    'tests/fast/test_fast.py::'
    'test_bf16_precision_runs_bf16_and_returns_float32':
    (NATIVE_BF16, frozenset()),
    'tests/fast/test_fast.py::'
    'test_tools_test_plain_by_default_and_fast_switch':
    (True, frozenset({'plain', 'fast', 'bf16'} if NATIVE_BF16 else
                     {'plain', 'fast'})),
    'tests/tools/test_benchmark.py::test_infer_times_bf16_beside_fp32':
    (NATIVE_BF16, frozenset()),
    'tests/engine/test_train_speed.py::test_fused_adamw_trains_like_default':
    (FUSED_ADAMW_ON_CPU, frozenset()),
}


def script_env(**more: str) -> dict[str, str]:
    """The environment tools run in: one OpenMP thread, unbuffered output."""
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1',
            **more}


def run_python_script(script: str | os.PathLike, *args: object,
                      env: dict[str, str] | None = None,
                      background: bool = False, timeout: float = 600,
                      umask: int | None = None, **popen: object,
                      ) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run ``python SCRIPT ARGS...`` from the repository root.

    ``script`` is a path relative to the root (``'tools/train.py'``), an
    absolute path, or ``'-c'`` followed by code. ``env`` adds variables to
    :func:`script_env`. ``umask`` sets the tool's file-mode mask. The
    result is a finished ``CompletedProcess`` with text stdout/stderr, or,
    with ``background=True``, the running process: a :class:`ForkedProcess`
    where the fork can run it (``start_new_session`` the only ``popen``
    argument), else a ``Popen`` (stdout/stderr piped unless given).

    A script with only :data:`RUN_TIME_ENV` variables added runs in a fork
    of the tool server (the imports paid once a pytest process), unless
    ``popen`` arguments are given (but for the background case above);
    ``-c`` code and the rest start a process.
    """
    first = str(script)
    if not first.startswith('-'):
        first = str(REPO_ROOT / first)
    argv = [sys.executable, first, *map(str, args)]
    full_env = script_env(**(env or {}))
    if (background and set(popen) <= {'start_new_session'}
            and fork_allowed(argv, env)):
        return _tool_server().start(
            argv[1:], REPO_ROOT, full_env, umask,
            new_session=bool(popen.get('start_new_session')))
    if background:
        if umask is not None:
            popen['preexec_fn'] = lambda: os.umask(umask)
        popen.setdefault('stdout', subprocess.PIPE)
        popen.setdefault('stderr', subprocess.PIPE)
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=full_env, text=True,
                                **popen)
    return run_argv(argv, full_env, timeout, added_env=env or {},
                    umask=umask, **popen)


def fork_allowed(argv: list[str], added_env: dict[str, str] | None) -> bool:
    """Whether ``argv`` can run in a fork of the tool server: ``python
    SCRIPT ...``, only :data:`RUN_TIME_ENV` variables added to the suite's
    environment, and ``CONVSEG_TEST_FORK`` not 0."""
    return (argv[0] == sys.executable and len(argv) > 1
            and not argv[1].startswith('-')
            and set(added_env or ()) <= RUN_TIME_ENV
            and os.environ.get('CONVSEG_TEST_FORK', '1') != '0')


def run_argv(argv: list[str], env: dict[str, str], timeout: float,
             added_env: dict[str, str] | None = None,
             umask: int | None = None,
             **popen: object) -> subprocess.CompletedProcess:
    """``argv`` run to its end from the repository root with the whole
    environment ``env``, text output captured: in a fork of the tool server
    when it is ``python SCRIPT ...`` and ``added_env`` (what the caller
    added to the suite's environment) holds only :data:`RUN_TIME_ENV`
    variables and no ``popen`` arguments (``subprocess.run``'s) are given,
    else as a process. ``umask``: the tool's file-mode mask (else the
    suite's)."""
    if not popen and fork_allowed(argv, added_env):
        return _tool_server().run(argv[1:], REPO_ROOT, env, timeout, umask)
    if umask is not None:
        popen['preexec_fn'] = lambda: os.umask(umask)
    return subprocess.run(argv, cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout, **popen)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_group(script: str | os.PathLike, *args: object,
              envs: list[dict[str, str]],
              python_path: tuple[str | os.PathLike, ...] = (),
              timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """``python SCRIPT ARGS...`` once per environment of ``envs`` (each
    added to :func:`script_env`), all at once, from the repository root, as
    the processes of one job (the ranks of a process group); ``python_path``:
    folders they import from (``PYTHONPATH``). Forks of the tool server
    where :func:`run_argv` would fork (every variable added a
    :data:`RUN_TIME_ENV` one or a rank's: RANK, WORLD_SIZE, MASTER_ADDR...),
    else processes. One finished ``CompletedProcess`` each."""
    argv = [str(REPO_ROOT / script), *map(str, args)]
    full = [script_env(**env) for env in envs]
    added = set().union(*envs) - RANK_ENV
    if (added <= RUN_TIME_ENV
            and os.environ.get('CONVSEG_TEST_FORK', '1') != '0'):
        return _tool_server().run_group(argv, REPO_ROOT, full, timeout,
                                        sys_path=tuple(map(str, python_path)))
    path = os.pathsep.join([*map(str, python_path), str(REPO_ROOT)])
    processes = [subprocess.Popen(
        [sys.executable, *argv], cwd=REPO_ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**env, 'PYTHONPATH': path}) for env in full]
    deadline = time.monotonic() + timeout
    results = []
    try:
        for process in processes:
            out, err = process.communicate(
                timeout=max(deadline - time.monotonic(), 0))
            results.append(subprocess.CompletedProcess(
                process.args, process.returncode, out, err))
    finally:
        for process in processes:
            process.kill()
    return results


#: what torchrun sets in each rank (read when the process group starts)
RANK_ENV = frozenset({'RANK', 'LOCAL_RANK', 'GROUP_RANK', 'WORLD_SIZE',
                      'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'})


def run_ranks(script: str | os.PathLike, *args: object, nproc: int = 2,
              env: dict[str, str] | None = None,
              python_path: tuple[str | os.PathLike, ...] = (),
              timeout: float = 600) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS...`` as ``nproc`` ranks of one process group on
    this machine, as ``torchrun --nproc_per_node NPROC`` starts them (RANK,
    LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set in each), from
    the repository root, each with ``env`` added; ``python_path`` as for
    :func:`run_group`, which runs them. One ``CompletedProcess``: the
    ranks' output in rank order, the first failed rank's exit status."""
    port = str(free_port())
    ranks = run_group(script, *args, python_path=python_path,
                      timeout=timeout, envs=[
                          dict(env or {}, RANK=str(r), LOCAL_RANK=str(r),
                               GROUP_RANK='0', WORLD_SIZE=str(nproc),
                               LOCAL_WORLD_SIZE=str(nproc),
                               MASTER_ADDR='127.0.0.1', MASTER_PORT=port)
                          for r in range(nproc)])
    failed = [r.returncode for r in ranks if r.returncode != 0]
    return subprocess.CompletedProcess(
        ranks[0].args, failed[0] if failed else 0,
        ''.join(r.stdout for r in ranks), ''.join(r.stderr for r in ranks))


def run_snippets_in_forks(folder: Path, prelude: str,
                          snippets: dict[str, str], *,
                          env: dict[str, str] | None = None,
                          snippet_env: dict[str, dict[str, str]] | None = None,
                          parallel: bool = False, timeout: float = 600,
                          ) -> dict[str, subprocess.CompletedProcess]:
    """Checks that each need a fresh interpreter, run in one: a new
    interpreter (``env`` added to :func:`script_env`) runs ``prelude``,
    then each snippet as a script in a fork of itself (tests/fork_snippets.py),
    one after the other or, with ``parallel``, all at once;
    ``snippet_env[name]``: variables set in that snippet's fork. Returns each
    snippet's exit status and output; fails the test if the interpreter
    itself failed or printed to stderr."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / 'spec.json'
    spec.write_text(json.dumps(dict(
        prelude=textwrap.dedent(prelude),
        snippets={k: textwrap.dedent(v) for k, v in snippets.items()},
        env=snippet_env or {}, parallel=parallel, folder=str(folder))))
    driver = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'tests' / 'fork_snippets.py'),
         str(spec)], cwd=REPO_ROOT, env=script_env(**(env or {})),
        capture_output=True, text=True, timeout=timeout)
    assert driver.returncode == 0 and driver.stderr == '', driver.stderr
    statuses = json.loads((folder / 'statuses.json').read_text())
    return {name: subprocess.CompletedProcess(
        [name], statuses[name], (folder / f'{name}.out').read_text(),
        (folder / f'{name}.err').read_text()) for name in snippets}


#: environment variables that tools read when they run, not when a module is
#: imported: a tool given only these can run in a fork of the warm server
RUN_TIME_ENV = frozenset({
    'TORCH_HOME', 'CONVSEG_KERNEL_CACHE', 'CONVSEG_MEASURE_KERNELS',
    'CONVSEG_MAX_IMAGE_PIXELS', 'CONVSEG_UNSAFE_LOAD',
    # urllib reads the proxy settings when a download opens its connection
    'http_proxy', 'https_proxy', 'all_proxy', 'no_proxy', 'HTTP_PROXY',
    'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY'})


class ToolServer:
    """The client of ``tests/tool_server.py``: one warm interpreter per
    pytest process, started at its first request; each tool runs in a fork
    of it (see that module for what a fork keeps and what it does not)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.background: ForkedProcess | None = None
        self.folder = Path(tempfile.mkdtemp(prefix='convseg_tools_'))

    def _server(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO_ROOT / 'tests' / 'tool_server.py')],
                cwd=REPO_ROOT, env=script_env(), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, bufsize=0)
        return self.process

    def _reply(self, server: subprocess.Popen, deadline: float) -> dict:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([server.stdout], [], [], max(left, 0))
        if not ready:
            raise TimeoutError
        line = server.stdout.readline()    # unbuffered: this line only
        if not line:
            raise RuntimeError(
                f'tests/tool_server.py ended (exit {server.wait()}); '
                'run with CONVSEG_TEST_FORK=0 to run tools as processes')
        return json.loads(line)

    def run(self, argv: list[str], cwd: Path, env: dict[str, str],
            timeout: float, umask: int | None = None,
            ) -> subprocess.CompletedProcess:
        """``python ARGV...`` in ``cwd`` with ``env`` (and ``umask``, else
        the server's), as a finished
        ``CompletedProcess`` (``subprocess.run``'s ``TimeoutExpired`` after
        ``timeout`` seconds, the child killed)."""
        return self.run_group(argv, cwd, [env], timeout, umask)[0]

    def _request(self, argv: list[str], cwd: Path,
                 envs: list[dict[str, str]], timeout: float,
                 umask: int | None, sys_path: tuple[str, ...] = (),
                 new_session: bool = False,
                 ) -> tuple[list[int], list[tuple[Path, Path]]]:
        """Send a request; the children's pids and (stdout, stderr) files."""
        if self.background is not None and self.background.poll() is None:
            raise RuntimeError(
                f'the tool server still runs {self.background.args}: wait '
                'for it (or kill it and wait) before the next tool')
        server = self._server()
        outputs = [(self.folder / f'stdout{i}', self.folder / f'stderr{i}')
                   for i in range(len(envs))]
        deadline = time.monotonic() + timeout + 60   # the first start
        server.stdin.write(json.dumps({
            'argv': argv, 'cwd': str(cwd), 'umask': umask,
            'sys_path': list(sys_path), 'new_session': new_session,
            'children': [dict(env=env, stdout=str(out), stderr=str(err))
                         for env, (out, err) in zip(envs, outputs)],
        }).encode() + b'\n')
        return self._reply(server, deadline)['pids'], outputs

    def run_group(self, argv: list[str], cwd: Path,
                  envs: list[dict[str, str]], timeout: float,
                  umask: int | None = None, sys_path: tuple[str, ...] = (),
                  ) -> list[subprocess.CompletedProcess]:
        """``python ARGV...`` in ``cwd``, once per environment of ``envs``,
        all at once (the ranks of a process group), ``sys_path`` after the
        script's folder on ``sys.path``: one finished ``CompletedProcess``
        each (``TimeoutExpired`` after ``timeout`` seconds, every child
        killed)."""
        pids, outputs = self._request(argv, cwd, envs, timeout, umask,
                                      sys_path)
        server = self._server()
        deadline = time.monotonic() + timeout

        try:
            codes = self._reply(server, deadline)['returncodes']
        except TimeoutError:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._reply(server, time.monotonic() + 60)
            raise subprocess.TimeoutExpired(
                [sys.executable, *argv], timeout,
                ''.join(_read(out) for out, _ in outputs),
                ''.join(_read(err) for _, err in outputs)) from None
        return [subprocess.CompletedProcess([sys.executable, *argv], code,
                                            _read(out), _read(err))
                for code, (out, err) in zip(codes, outputs)]

    def start(self, argv: list[str], cwd: Path, env: dict[str, str],
              umask: int | None = None, new_session: bool = False,
              ) -> ForkedProcess:
        """``python ARGV...`` in ``cwd`` with ``env``, left running: the
        server answers no other request until it has ended."""
        (pid, ), ((stdout, stderr), ) = self._request(
            argv, cwd, [env], 600, umask, new_session=new_session)
        self.background = ForkedProcess(self._server(), self._reply,
                                        [sys.executable, *argv], pid,
                                        stdout, stderr)
        return self.background


def _read(path: Path) -> str:
    return path.read_text(errors='replace')


class ForkedProcess:
    """A tool running in a fork of the tool server, as ``Popen`` would give
    it for what the tests use: ``pid``, ``args``, ``poll()``,
    ``wait(timeout)``, ``returncode``; its stdout and stderr go to files
    (:meth:`output`)."""

    def __init__(self, server: subprocess.Popen,
                 reply: Callable[[subprocess.Popen, float], dict],
                 args: list[str], pid: int, stdout: Path, stderr: Path
                 ) -> None:
        self._server, self._reply = server, reply
        self.args, self.pid = args, pid
        self.stdout_file, self.stderr_file = stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status if the tool has ended, else None."""
        if self.returncode is None:
            with contextlib.suppress(TimeoutError):
                self.returncode = self._reply(self._server,
                                              0)['returncodes'][0]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end (``subprocess.TimeoutExpired`` after
        ``timeout`` seconds); the exit status."""
        if self.returncode is None:
            deadline = time.monotonic() + (1e9 if timeout is None
                                           else timeout)
            try:
                self.returncode = self._reply(self._server,
                                              deadline)['returncodes'][0]
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args,
                                                timeout) from None
        return self.returncode

    def output(self) -> str:
        """What the tool wrote so far: stdout, then stderr."""
        return _read(self.stdout_file) + _read(self.stderr_file)


@functools.cache
def _tool_server() -> ToolServer:
    return ToolServer()


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """The repository's root folder."""
    return REPO_ROOT


@pytest.fixture(scope='session')
def tiny_config() -> Path:
    """The tiny UPerNet-ConvNeXt config under ``tests/data/``."""
    return TINY_CONFIG


#: the tiny model trained on an ADE20K-layout folder (``{data_root}``) with
#: the project's base configs, which bring convseg's hooks; fp32, no
#: validation, a few iterations
TINY_TRAIN_CONFIG = '''
_base_ = [
    {tiny!r},
    {repo!r} + '/configs/_base_/datasets/ade20k.py',
    {repo!r} + '/configs/_base_/default_runtime.py',
    {repo!r} + '/configs/_base_/schedules/schedule_160k.py',
    {repo!r} + '/configs/_base_/optimizers/adamw_layer_decay.py',
]
crop = (32, 32)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop),
    backbone=dict(drop_path_rate=0.2),
    decode_head=dict(norm_cfg=norm_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={data_root!r}, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomCrop', crop_size=crop),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs'),
    ]))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root={data_root!r}))
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=1e-3))
train_cfg = dict(max_iters=4, val_interval=1000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
randomness = dict(seed=0, deterministic=True)
'''


@pytest.fixture(scope='session')
def tiny_train_config() -> Callable[..., Path]:
    """``tiny_train_config(path, data_root, **overrides)``: write
    :data:`TINY_TRAIN_CONFIG` for ``data_root`` beside ``path`` and, at
    ``path``, a config that inherits it with ``overrides`` (dicts merge into
    the base's, anything else replaces); returns ``path``."""

    def write(path: Path, data_root: str | os.PathLike,
              **overrides: object) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        base = path.with_name(path.stem + '_base.py')
        base.write_text(TINY_TRAIN_CONFIG.format(
            tiny=str(TINY_CONFIG), repo=str(REPO_ROOT),
            data_root=str(data_root)))
        lines = [f'_base_ = [{str(base)!r}]'] + [
            f'{name} = {value!r}' for name, value in overrides.items()]
        path.write_text('\n'.join(lines) + '\n')
        return path

    return write


@pytest.fixture(scope='session')
def snippets_in_forks() -> Callable[..., dict[str,
                                           subprocess.CompletedProcess]]:
    """:func:`run_snippets_in_forks`: fresh-interpreter checks that share
    one interpreter."""
    return run_snippets_in_forks


@pytest.fixture(scope='session')
def rank_group() -> Callable[..., subprocess.CompletedProcess]:
    """:func:`run_ranks`: a tool run as the ranks of a process group."""
    return run_ranks


@pytest.fixture(scope='session')
def run_script() -> Callable[..., subprocess.CompletedProcess |
                             subprocess.Popen]:
    """:func:`run_python_script`: a tool run as users run it."""
    return run_python_script


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder all workers of this session share: under pytest-xdist
    each worker has its own base temp dir inside it; without, the base."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


@contextlib.contextmanager
def made_once(tmp_path_factory: pytest.TempPathFactory,
              name: str) -> Iterator[tuple[Path, bool]]:
    """``with made_once(factory, name) as (folder, ready):`` one folder per
    session, made by the first worker that asks; the others wait on a lock
    and get ``ready=True`` (a ``done`` file is written when the block ends
    without an error)."""
    folder = shared_dir(tmp_path_factory) / name
    with FileLock(str(folder) + '.lock'):
        done = folder / '.done'
        ready = done.is_file()
        folder.mkdir(exist_ok=True)
        yield folder, ready
        done.touch()


@pytest.fixture(scope='session')
def dataset(tmp_path_factory: pytest.TempPathFactory
            ) -> Callable[..., str]:
    """``dataset(kind, **params)``: a generated dataset, once per session
    (shared by the xdist workers).

    ``kind`` is ``'ade20k'``, ``'cityscapes'`` or ``'scenes'``; ``params``
    go to the matching ``convseg.datasets.generate_*``. Callers must not
    change the files: other tests share them.
    """
    from convseg.datasets import (generate_ade20k, generate_cityscapes,
                                  generate_scenes)
    generators = dict(ade20k=generate_ade20k, cityscapes=generate_cityscapes,
                      scenes=generate_scenes)

    roots: dict[tuple[str, str], str] = {}

    def make(kind: str, **params: object) -> str:
        key = (kind, repr(sorted(params.items())))
        if key not in roots:
            name = f'{kind}_data_' + hashlib.sha1(
                key[1].encode()).hexdigest()[:10]
            with made_once(tmp_path_factory, name) as (folder, _):
                # generate_* reuse a dataset made with the same settings
                roots[key] = generators[kind](str(folder), **params)
        return roots[key]

    return make


@pytest.fixture(scope='session')
def ade20k_root(dataset: Callable[..., str]) -> str:
    """A small generated ADE20K: 4 training and 2 validation 48x64 images."""
    return dataset('ade20k', num_train=4, num_val=2, size=(48, 64))


@pytest.fixture(scope='session')
def cityscapes_root(dataset: Callable[..., str]) -> str:
    """A small generated Cityscapes, with label train ids, 64x128 images."""
    return dataset('cityscapes', num_train=4, num_val=2)


@pytest.fixture(scope='session')
def scenes_root(dataset: Callable[..., str]) -> str:
    """A small generated scene dataset: 24 training, 4 validation images."""
    return dataset('scenes', num_train=24, num_val=4)


@pytest.fixture(scope='session')
def quickstart_run(tmp_path_factory: pytest.TempPathFactory,
                   run_script: Callable[..., subprocess.CompletedProcess]
                   ) -> dict:
    """``tools/quickstart.py`` on 32 + 8 scenes for 100 iterations, once per
    session (shared by the xdist workers): ``result`` (the finished process,
    its args, return code and output), ``data`` (the dataset's
    root), ``work`` (its work dir, checkpoint ``iter_100.pth``), ``iters``."""
    iters = 100
    with made_once(tmp_path_factory, 'quickstart') as (root, ready):
        data_root, work_dir = root / 'data', root / 'work'
        saved = root / 'result.json'
        if ready:
            result = subprocess.CompletedProcess(
                **json.loads(saved.read_text()))
        else:
            result = run_script(
                'tools/quickstart.py', '--num-train', 32, '--num-val', 8,
                '--iters', iters, '--num-overlays', 2, '--data-root',
                data_root, '--work-dir', work_dir, timeout=1200)
            assert result.returncode == 0, (result.stdout[-3000:] +
                                            result.stderr)
            saved.write_text(json.dumps(dict(
                args=result.args, returncode=result.returncode,
                stdout=result.stdout, stderr=result.stderr)))
    return dict(result=result, data=data_root / 'synthetic_scenes',
                work=work_dir, iters=iters)


@pytest.fixture
def umask_022() -> int:
    """Run the test under umask 022, the common default; restore it after."""
    old = os.umask(0o022)
    yield 0o022
    os.umask(old)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data)))


@pytest.fixture(scope='session')
def png_bomb():
    """A writer of complete, valid 1-bit grey PNGs of any declared size:
    black pixels compress about 1000:1, so 40000x40000 is ~200 KB on disk
    and 1.6 G pixels (4.8 GB as BGR) decoded."""

    def write(path: Path, width: int = 40000, height: int = 40000) -> Path:
        row = b'\0' * (1 + (width + 7) // 8)  # filter byte + packed bits
        # a raw deflate block of 1000 rows, full-flushed so that its bytes
        # repeated decode to the rows repeated; the zlib header and checksum
        # around them
        pack = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = pack.compress(row * 1000) + pack.flush(zlib.Z_FULL_FLUSH)
        rest = pack.compress(row * (height % 1000)) + pack.flush()
        checksum = 1
        for _ in range(height // 1000):
            checksum = zlib.adler32(row * 1000, checksum)
        checksum = zlib.adler32(row * (height % 1000), checksum)
        body = (b'\x78\xda' + block * (height // 1000) + rest +
                struct.pack('>I', checksum))
        header = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)
        path.write_bytes(b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', header) +
                         _chunk(b'IDAT', body) + _chunk(b'IEND', b''))
        return path

    return write


#: test files that run tools end to end without the run_script fixture
END_TO_END_FILES = ('tests/gpu/test_dry_run.py', )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``end_to_end`` marker."""
    config.addinivalue_line(
        'markers', 'end_to_end: runs a tool as a user would (left out by '
        'make test-quick)')


#: the slowest test files, slowest first (measured on the 2-vCPU Xeon; the
#: two deploy and fast-path files added from a fresh-clone run on the AMD
#: EPYC Zen 3): they are collected first, and the Makefile's
#: ``--dist loadfile --no-loadscope-reorder`` hands them out in this order,
#: before the short ones, so that no worker is left with a long file at the
#: end. Only a schedule: a file missing here runs after these, in the usual
#: order.
SLOW_FIRST = (
    'tests/deploy/test_export_tool.py', 'tests/tools/test_benchmark.py',
    'tests/engine/test_train_speed.py', 'tests/deploy/test_openvino.py',
    'tests/tools/test_reliability.py', 'tests/test_mmcv_ops_hook.py',
    'tests/deploy/test_export.py', 'tests/test_compat.py',
    'tests/fast/test_fast.py',
    'tests/tools/test_train_test.py', 'tests/tools/test_benchmark_gpu.py',
    'tests/tools/test_gpu_wheels.py',
    'tests/test_layers.py', 'tests/deploy/test_benchmark_onnx.py',
    'tests/tools/test_convert_checkpoint.py',
    'tests/tools/test_convert_dataset.py', 'tests/gpu/test_dry_run.py',
    'tests/tools/test_test_tool.py', 'tests/engine/test_stock_runner.py')


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put :data:`SLOW_FIRST` first; mark the end-to-end tests (see the
    module's docstring)."""
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split('::')[0],
                                         len(SLOW_FIRST)))
    for item in items:
        path = item.nodeid.split('::')[0]
        if (path.startswith('tests/tools/') or path in END_TO_END_FILES or
                'run_script' in getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.end_to_end)


def capability_gaps(collected: set[str], deselected: set[str],
                    outcomes: dict[str, str],
                    variants: dict[str, set[str]]) -> list[str]:
    """What :data:`MUST_RUN` expected of this session and did not get.

    ``collected`` and ``deselected`` are test ids; ``outcomes`` maps an id to
    'skipped' when any of its phases skipped; ``variants`` holds what each
    test recorded. A test of a collected file missing from both sets was
    renamed or removed, and so is a file that no longer exists (moved): both
    are gaps, so that the table stays true.
    """
    files = {test_id.split('::')[0] for test_id in collected}
    gaps = []
    for test_id, (must, expected) in MUST_RUN.items():
        if not must or test_id in deselected:
            continue
        if test_id not in collected:
            path = test_id.split('::')[0]
            if path in files or not (REPO_ROOT / path).is_file():
                gaps.append(f'{test_id}: not collected (renamed or moved? '
                            'update MUST_RUN in tests/conftest.py)')
            continue
        if outcomes.get(test_id) == 'skipped':
            gaps.append(f'{test_id}: skipped, and this machine can run it')
        elif expected - variants.get(test_id, set()):
            missing = ', '.join(sorted(expected - variants.get(test_id,
                                                               set())))
            gaps.append(f'{test_id}: ran without its {missing} variant')
    return gaps


_OUTCOMES: dict[str, str] = {}
_VARIANTS: dict[str, set[str]] = {}
_DESELECTED: set[str] = set()


def _base_id(nodeid: str) -> str:
    return nodeid.split('[')[0]


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember what -k / -m left out: those are not gaps."""
    _DESELECTED.update(_base_id(item.nodeid) for item in items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record skips and the variants each test ran."""
    test_id = _base_id(report.nodeid)
    if report.skipped:
        _OUTCOMES[test_id] = 'skipped'
    for name, value in report.user_properties:
        if name == 'variants':
            _VARIANTS.setdefault(test_id, set()).update(value.split())


_COLLECTED: set[str] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """Under pytest-xdist (``make test`` runs two workers), the controller
    collects nothing itself: each worker hands over what it collected and
    deselected (see :func:`pytest_sessionfinish`)."""
    output = getattr(node, 'workeroutput', {})
    _COLLECTED.update(output.get('convseg_collected', ()))
    _DESELECTED.update(output.get('convseg_deselected', ()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when a test this machine can run did not run."""
    workeroutput = getattr(session.config, 'workeroutput', None)
    if workeroutput is not None:  # an xdist worker: report to the controller
        workeroutput['convseg_collected'] = sorted(
            _base_id(i.nodeid) for i in getattr(session, 'items', ()))
        workeroutput['convseg_deselected'] = sorted(_DESELECTED)
        return
    collected = _COLLECTED | {_base_id(i.nodeid)
                              for i in getattr(session, 'items', ())}
    if not collected:
        return
    gaps = capability_gaps(collected, _DESELECTED, _OUTCOMES, _VARIANTS)
    if gaps:
        reporter = session.config.pluginmanager.get_plugin('terminalreporter')
        lines = ['tests this machine can run did not run (native bf16: '
                 f'{NATIVE_BF16}, torch {TORCH_VERSION}):', *gaps]
        if reporter is not None:
            reporter.write_line('\n'.join(lines), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
