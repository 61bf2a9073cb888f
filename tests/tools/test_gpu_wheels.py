"""The offline wheel procedure for GPU nodes, on a short list: the download
script fetches the wheels of the asked Python and platform (from the package
index, so this test needs it), and the GPU command installs them without
network into its target folder, once, before running the GPU tests.

The real list (tools/gpu_wheels.txt) is checked by the README's procedure.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TAG = f'{sys.version_info[0]}{sys.version_info[1]}'


@pytest.fixture
def bash(repo_root):
    """``bash(*args, **env)``: a shell script run from the repository root
    with one OpenMP thread and ``env`` added to the environment."""

    def run(*args, **env):
        return subprocess.run(
            ['bash', *args], cwd=repo_root, capture_output=True, text=True,
            timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1', **env))

    return run


def test_download_then_offline_install_and_run(tmp_path, bash):
    wheel_list = tmp_path / 'list.txt'
    wheel_list.write_text('addict==2.4.0\npyyaml==6.0.4\n')
    wheels = tmp_path / f'py{TAG}'
    env = dict(CONVSEG_WHEELS=str(wheels),
               CONVSEG_GPU_WHEEL_LIST=str(wheel_list))

    done = bash('tools/download_gpu_wheels.sh', '3.12', **env)
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(p.name for p in wheels.iterdir())
    assert names[0] == 'addict-2.4.0-py3-none-any.whl'
    assert names[1].startswith('pyyaml-6.0.4-cp312-cp312-manylinux')
    assert len(names) == 2 and not Path(f'{wheels}.partial').exists()
    assert done.stdout.splitlines()[-1].startswith(
        '[wheels] 2 wheels (')
    assert done.stdout.splitlines()[-1].endswith(
        f') for CPython 3.12 manylinux x86_64 in {wheels}')

    # the same list for this Python, installed by the GPU command
    done = bash('tools/download_gpu_wheels.sh', f'3.{sys.version_info[1]}',
                **env)
    assert done.returncode == 0, done.stderr[-3000:]
    target = tmp_path / f'target-py{TAG}'
    # the first run installs, the second reuses the installed wheels (pytest
    # only says its version: collecting and running the GPU tests is the
    # dry run's, tests/gpu/test_dry_run.py)
    runs = [bash('tools/test_gpu.sh', '--version', PYTHON=sys.executable,
                 **env) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert runs[0].stdout.startswith(
        f'[test-gpu] installing 2 wheels from {wheels} into {target}\n')
    assert runs[0].stdout.splitlines()[-1] == f'pytest {pytest.__version__}'
    assert '[test-gpu] installing' not in runs[1].stdout
    assert runs[1].stdout.splitlines()[-1] == f'pytest {pytest.__version__}'
    assert (target / 'addict' / '__init__.py').is_file()
    assert (target / 'yaml' / '__init__.py').is_file()


def test_download_refuses_a_bad_version(bash):
    done = bash('tools/download_gpu_wheels.sh', 'py312')
    assert done.returncode == 2
    assert done.stderr == ('usage: bash tools/download_gpu_wheels.sh '
                           '[--lean] [PYTHON_VERSION, e.g. 3.12]\n')


def test_lean_list_is_part_of_the_full_list(repo_root):
    def pins(name):
        lines = (repo_root / 'tools' / name).read_text().splitlines()
        return dict(line.split('==') for line in lines
                    if line and not line.startswith('#'))

    lean, full = pins('gpu_wheels_lean.txt'), pins('gpu_wheels.txt')
    assert {k: full.get(k) for k in lean} == lean
    assert {'mmengine', 'mmcv-lite', 'mmsegmentation',
            'mmpretrain'} <= lean.keys()
    # what the device image holds stays out
    assert not {'torch', 'numpy', 'matplotlib', 'scipy', 'pytest'} & \
        lean.keys()
