"""Run a Python script in a fork of this process, as ``python SCRIPT ARGS``.

Each of convseg's tools imports torch, mmengine, mmseg and convseg before it
does anything: about 18 s on a quiet 2-vCPU Xeon, most of a short tool run.
A process that has imported them once (``tools/quickstart.py``, the test
suite's tool server) runs each tool in a forked child instead: the child has
the modules already, runs the script as the interpreter runs a file
(``__main__``, ``sys.argv``, ``sys.path[0]`` the script's folder) and exits
as the interpreter does: the script's ``SystemExit`` code, or 1 with a
traceback after an uncaught exception.

A fork keeps what the parent set up at import time: environment variables
read at import, and any thread pool already started. The parent must not
run torch operators before it forks (an OpenMP pool started in the parent
does not work in the child); where ``os.fork`` is missing or
``CONVSEG_NO_FORK=1``, :func:`run_script` starts a real process instead.
"""
from __future__ import annotations

import atexit
import os
import runpy
import subprocess
import sys
import traceback
from collections.abc import Callable

#: what convseg's tools import first (the slow part of a tool's start),
#: and what a runner imports lazily on its first use: mmengine's visualizer
#: imports matplotlib.pyplot, its environment report torch.utils.cpp_extension
#: (setuptools), and torch.optim's first optimizer torch._dynamo. Those three
#: took 6 s of a 10 s two-iteration train.py fork on a busy 2-vCPU Xeon;
#: imported in the parent, the fork took 4 s.
TOOL_MODULES = (
    'convseg', 'convseg.cli', 'convseg.apis', 'convseg.datasets',
    'convseg.engine', 'mmengine.runner', 'mmseg.apis', 'mmseg.models',
    'mmseg.datasets', 'matplotlib.pyplot', 'torch.utils.cpp_extension',
    'torch._dynamo')


def import_tool_modules() -> None:
    """Import :data:`TOOL_MODULES`, so that forks start warm."""
    import importlib
    for name in TOOL_MODULES:
        importlib.import_module(name)


def fork_available() -> bool:
    """Whether :func:`run_script` forks (else it starts a process)."""
    return hasattr(os, 'fork') and os.environ.get('CONVSEG_NO_FORK') != '1'


def exit_code(error: SystemExit) -> int:
    """The exit status the interpreter gives a ``SystemExit``: 0 for None,
    the int, else 1 after printing the value to stderr."""
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def run_in_child(argv: list[str]) -> int:
    """Run ``argv`` = [SCRIPT, ARGS...] as ``python`` runs a file, in this
    process; the exit status it would end with."""
    script = os.path.abspath(argv[0])
    sys.argv = [script, *argv[1:]]
    sys.path[0] = os.path.dirname(script)
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as error:
        return exit_code(error)
    except BaseException:  # noqa: B902  (as the interpreter reports it)
        traceback.print_exc()
        return 1
    return 0


def finish_child(code: int) -> None:
    """End a forked child as the interpreter ends: exit handlers, flushed
    streams, then the status (never returns into the parent's code)."""
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def forget_parents_children() -> None:
    """In a child: drop the parent's multiprocessing children from
    ``multiprocessing``'s books, as it does itself in a process it starts.

    Otherwise its exit handler, run by :func:`finish_child`, terminates the
    parent's daemonic processes (a DataLoader's workers, say): they are not
    the child's to end, and torch's SIGCHLD handler in the parent then fails
    the parent with ``DataLoader worker (pid N) is killed by signal:
    Terminated``.
    """
    import multiprocessing.process
    multiprocessing.process._children.clear()


def fork_script(argv: list[str],
                prepare: Callable[[], None] | None = None) -> int:
    """Fork; the child calls ``prepare()`` (redirects, environment), runs
    ``argv`` = [SCRIPT, ARGS...] as ``python`` would and ends with its exit
    status. Returns the child's pid (to ``os.waitpid``)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            forget_parents_children()
            if prepare is not None:
                prepare()
            code = run_in_child(argv)
        finally:
            finish_child(code)
    return pid


def redirect_output(stdout: str, stderr: str) -> None:
    """In a child: file descriptors 1 and 2 to the files ``stdout`` and
    ``stderr`` (created or truncated)."""
    for fd, path in ((1, stdout), (2, stderr)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(opened, fd)
        os.close(opened)


def wait_for(pid: int) -> int:
    """The exit status of child ``pid`` once it ends (negative: the signal
    that killed it, as ``subprocess`` reports it)."""
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def run_script(argv: list[str], cwd: str | None = None) -> int:
    """``python ARGV...`` in ``cwd``, its output on ours; its exit status
    (negative: the signal that killed it, as ``subprocess`` reports it)."""
    if not fork_available():
        return subprocess.call([sys.executable, *argv], cwd=cwd)
    return wait_for(
        fork_script(argv, None if cwd is None else lambda: os.chdir(cwd)))
