"""A warm interpreter that runs each tool in a forked child of itself.

Every tool of the suite's end-to-end tests imports torch, mmengine, mmseg and
convseg before it does anything: about 18 s of one core per run on a quiet
2-vCPU Xeon, times about a hundred runs. This server pays that once per
pytest worker: it imports those modules, then for each request forks, and
the child runs the script with :mod:`convseg.warm_fork` as ``python SCRIPT
ARGS...`` would, in the working directory and environment of the request,
stdout/stderr to files, stdin from /dev/null. The parent reports the
child's pid, then its exit status.

What a fork cannot give, the suite runs as a real process
(:func:`tests.conftest.run_python_script` decides): ``python -c`` code,
environment variables that are read when a module is imported, and
background runs with ``subprocess.Popen`` arguments of their own.

Protocol, one JSON object per line on the server's stdin and stdout:
request ``{"argv": [...], "cwd": ..., "umask": N or null, "sys_path":
[...], "children": [{"env": {...}, "stdout": PATH, "stderr": PATH}, ...]}``:
the script runs in one forked child per entry of ``children``, all at once
(the ranks of a process group, each with its own environment), with
``sys_path`` put after the script's folder on ``sys.path`` (what
``PYTHONPATH`` gives a new interpreter), each child the leader of a new
session when ``"new_session"`` is true (``Popen``'s
``start_new_session``); replies ``{"pids": [...]}`` then
``{"returncodes": [...]}`` (negative: killed by that signal, as
``subprocess`` reports it).
"""
from __future__ import annotations

import functools
import json
import os
import sys

from convseg.warm_fork import (fork_script, import_tool_modules,
                               redirect_output, wait_for)


def redirect(request: dict, child: dict) -> None:
    """In a child: a new session if asked, stdout/stderr to its files, its
    environment, the request's working directory, umask and ``sys.path``
    entries."""
    if request.get('new_session'):
        os.setsid()
    redirect_output(child['stdout'], child['stderr'])
    os.environ.clear()
    os.environ.update(child['env'])
    os.chdir(request['cwd'])
    if request.get('umask') is not None:
        os.umask(request['umask'])
    sys.path[1:1] = request.get('sys_path', [])


def serve() -> None:
    """Answer requests until stdin closes; each runs in forked children."""
    import_tool_modules()
    # the protocol moves off fds 0/1, which the children take over
    requests = os.fdopen(os.dup(0), 'r')
    replies = os.fdopen(os.dup(1), 'w')
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    for line in requests:
        request = json.loads(line)

        def prepare(child: dict, request: dict = request) -> None:
            requests.close()
            replies.close()
            redirect(request, child)

        pids = [fork_script(request['argv'], functools.partial(prepare, c))
                for c in request['children']]
        replies.write(json.dumps({'pids': pids}) + '\n')
        replies.flush()
        codes = [wait_for(pid) for pid in pids]
        replies.write(json.dumps({'returncodes': codes}) + '\n')
        replies.flush()


if __name__ == '__main__':
    serve()
