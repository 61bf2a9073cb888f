"""convseg's layers import only downward: the data layer never loads the
inference front or deployment."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: the packages a data-side import must not load
FRONT_PREFIXES = ('convseg.apis', 'convseg.fast', 'convseg.deploy')


def loaded_front_modules(module: str) -> list[str]:
    """The front modules that importing ``module`` loads in a fresh
    interpreter (which also checks that the base image module loaded)."""
    probe = (f'import json, sys, {module}\n'
             f'print(json.dumps(sorted(name for name in sys.modules\n'
             f'    if name.startswith({FRONT_PREFIXES!r}))))\n'
             f'assert "convseg.imageio" in sys.modules')
    done = subprocess.run([sys.executable, '-c', probe], cwd=REPO_ROOT,
                          capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize('module', ['convseg', 'convseg.datasets'])
def test_the_data_side_loads_no_inference_or_deploy_module(module):
    assert loaded_front_modules(module) == []


def test_the_probe_sees_front_modules_when_they_load():
    assert 'convseg.apis.inference' in loaded_front_modules('convseg.apis')
