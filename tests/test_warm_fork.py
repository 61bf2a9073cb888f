"""convseg.warm_fork: a script run in a fork ends as ``python SCRIPT`` does.

Each case runs the same script both ways, through ``run_script`` and through
the interpreter, and compares the exit status and the output.
"""
from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time

import pytest

from convseg import warm_fork

SCRIPTS = {
    'normal end': "import sys\nprint('args', sys.argv[1:])\n",
    'exit 3': "import sys\nprint('before')\nsys.exit(3)\n",
    'exit with a message': "import sys\nsys.exit('refused: bad input')\n",
    'uncaught error': "raise ValueError('broken config key: model.x')\n",
    'working dir and __main__': (
        "import os, sys\nprint(os.getcwd(), __name__, "
        "os.path.basename(sys.path[0]))\n"),
    'exit handler': (
        "import atexit\natexit.register(print, 'exit handler ran')\n"),
}


def interpreter(script, cwd, *args):
    done = subprocess.run([sys.executable, str(script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize('no_fork', ['0', '1'], ids=['fork', 'process'])
@pytest.mark.parametrize('case', SCRIPTS)
def test_run_script_ends_as_the_interpreter_does(case, no_fork, tmp_path,
                                                 capfd, monkeypatch):
    folder = tmp_path / 'scripts'
    folder.mkdir()
    script = folder / 'tool.py'
    script.write_text(SCRIPTS[case])
    expected = interpreter(script, tmp_path, 'a', '--b')
    monkeypatch.setenv('CONVSEG_NO_FORK', no_fork)
    assert warm_fork.fork_available() is (no_fork == '0')
    capfd.readouterr()
    code = warm_fork.run_script([str(script), 'a', '--b'], cwd=str(tmp_path))
    out, err = capfd.readouterr()
    assert code == expected[0]
    assert out == expected[1]
    # the traceback's last line names the error as the interpreter does
    assert err.strip().splitlines()[-1:] == \
        expected[2].strip().splitlines()[-1:]


def test_fork_leaves_the_parent_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv('CONVSEG_NO_FORK', '0')
    script = tmp_path / 'tool.py'
    script.write_text('import os, sys\nos.chdir("/")\nsys.argv[:] = ["x"]\n'
                      'sys.path.insert(0, "/nowhere")\n')
    argv, path, cwd = list(sys.argv), list(sys.path), tmp_path.cwd()
    assert warm_fork.run_script([str(script)], cwd=str(tmp_path)) == 0
    assert (sys.argv, sys.path, tmp_path.cwd()) == (argv, path, cwd)


def test_fork_leaves_the_parents_processes_running(tmp_path, monkeypatch):
    # a daemonic process of the parent's (as a DataLoader worker is): the
    # child's exit handlers must not terminate it
    monkeypatch.setenv('CONVSEG_NO_FORK', '0')
    worker = multiprocessing.get_context('fork').Process(
        target=time.sleep, args=(60, ), daemon=True)
    worker.start()
    try:
        script = tmp_path / 'tool.py'
        script.write_text("print('done')\n")
        assert warm_fork.run_script([str(script)]) == 0
        worker.join(timeout=1)
        assert worker.exitcode is None
    finally:
        worker.terminate()
        worker.join()
    assert worker.exitcode == -signal.SIGTERM


def test_exit_code_of_system_exit_values(capsys):
    assert warm_fork.exit_code(SystemExit()) == 0
    assert warm_fork.exit_code(SystemExit(4)) == 4
    assert warm_fork.exit_code(SystemExit('no such file: x.py')) == 1
    assert capsys.readouterr().err == 'no such file: x.py\n'
