"""``python tests/fork_snippets.py SPEC``: one fresh interpreter, several
checks that each need a fresh one.

Some tests check what a new interpreter does (what an import prints, what
loads before ``import convseg``, a process group per node). Each such
interpreter spends most of its life importing torch and mmseg: about 18 s on
a quiet 2-vCPU Xeon. Checks that start from the same state share one: this
script runs the spec's prelude (code: the imports the checks have in
common), then runs each snippet as a script in a fork of itself, so every
snippet starts from the prelude's state and none sees another's. The
snippets run one after the other, or all at once with ``"parallel": true``
(ranks of one process group).

It imports nothing of convseg itself (``convseg.warm_fork`` is loaded from
its file, outside the package), so that a prelude can check that convseg is
not loaded.

SPEC (JSON): ``{"prelude": CODE, "snippets": {NAME: CODE}, "env": {NAME:
{VAR: VALUE}}, "parallel": bool, "folder": DIR}``. Each snippet's stdout and
stderr go to DIR/NAME.out and DIR/NAME.err, the exit statuses to
DIR/statuses.json. :func:`tests.conftest.run_snippets_in_forks` is the
client.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load_warm_fork():
    """convseg/warm_fork.py as a module of its own (standard library only)."""
    path = os.path.join(os.path.dirname(HERE), 'convseg', 'warm_fork.py')
    spec = importlib.util.spec_from_file_location('_fork_snippets_warm_fork',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    warm_fork = load_warm_fork()
    folder = spec['folder']
    exec(compile(spec['prelude'], '<prelude>', 'exec'),
         sys.modules['__main__'].__dict__)
    pids, statuses = {}, {}
    for name, code in spec['snippets'].items():
        script = os.path.join(folder, f'{name}.py')
        with open(script, 'w') as f:
            f.write(code)
        out, err = (os.path.join(folder, name + ext) for ext in ('.out',
                                                                 '.err'))
        env = spec.get('env', {}).get(name, {})

        def prepare(out=out, err=err, env=env) -> None:
            warm_fork.redirect_output(out, err)
            os.environ.update(env)

        pid = warm_fork.fork_script([script], prepare)
        if spec.get('parallel'):
            pids[name] = pid
        else:
            statuses[name] = warm_fork.wait_for(pid)
    statuses.update({name: warm_fork.wait_for(pid)
                     for name, pid in pids.items()})
    with open(os.path.join(folder, 'statuses.json'), 'w') as f:
        json.dump(statuses, f)


if __name__ == '__main__':
    main()
