"""Kill an AMP training run with SIGKILL and resume it: the loss scaler's
state comes back from the checkpoint.

The run is the real ``tools/train.py`` on the scenes, fp16 AMP with a
dynamic loss scale that starts at 16 and doubles every 10 overflow-free
steps, so that the scale at a checkpoint depends on the iteration. An
uninterrupted run of the same config is the reference: from the first
checkpoint after the resume on, both hold the same scaler state; a resume
that lost it would restart at 16 with its growth count at 0.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch

from .gpu_helpers import check_ok, scenes_config

ITERS, INTERVAL, GROWTH = 60, 5, 10
SCALER = dict(init_scale=16.0, growth_interval=GROWTH)


def amp_config(tmp_path, scenes: str) -> str:
    return scenes_config(
        tmp_path / 'amp.py', scenes,
        optim_wrapper=dict(type='AmpOptimWrapper', loss_scale=SCALER,
                           optimizer=dict(type='AdamW', lr=1e-3,
                                          weight_decay=0.05),
                           constructor='LayerDecayOptimWrapperConstructor',
                           paramwise_cfg=dict(decay_rate=0.9,
                                              decay_type='stage_wise',
                                              num_layers=4)),
        param_scheduler=[],
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=ITERS,
                       val_interval=ITERS),
        default_hooks=dict(checkpoint=dict(interval=INTERVAL)))


def scaler_state(path) -> dict:
    """The loss scaler's state in an mmengine checkpoint."""
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    return checkpoint['optimizer']['loss_scaler']


def kill_after(run_script, config: str, work_dir, iteration: int) -> None:
    """Start tools/train.py and SIGKILL it once iter_ITERATION.pth is
    written (checkpoints appear complete, by rename)."""
    proc = run_script('tools/train.py', config, '--work-dir', work_dir,
                      background=True, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not (work_dir / f'iter_{iteration}.pth').exists():
        assert proc.poll() is None, f'training ended ({proc.returncode})'
        assert time.monotonic() < deadline, 'no checkpoint after 10 minutes'
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


@pytest.mark.gpu
def test_killed_amp_run_resumes_the_loss_scaler(tmp_path, scenes,
                                                run_script) -> None:
    config = amp_config(tmp_path, scenes)
    reference, killed = tmp_path / 'reference', tmp_path / 'killed'
    check_ok(run_script('tools/train.py', config, '--work-dir', reference))
    expected = {i: scaler_state(reference / f'iter_{i}.pth')
                for i in range(INTERVAL, ITERS + 1, INTERVAL)}
    # the scale grew by steps (no overflow, no skipped step): the state at
    # a checkpoint tells its iteration apart from a fresh start
    assert expected[ITERS]['scale'] == 16.0 * 2**(ITERS // GROWTH)
    assert expected[ITERS]['_growth_tracker'] == 0

    kill_after(run_script, config, killed, 2 * GROWTH)
    assert not (killed / f'iter_{ITERS}.pth').exists(), \
        'the run ended before it was killed'
    done = sorted(int(p.stem.split('_')[1]) for p in killed.glob('iter_*.pth'))
    last = done[-1]
    assert scaler_state(killed / f'iter_{last}.pth') == expected[last]

    output = check_ok(run_script('tools/train.py', config, '--work-dir',
                                 killed, '--resume'))
    assert f'resumed epoch: 0, iter: {last}' in output
    for i in range(last + INTERVAL, ITERS + 1, INTERVAL):
        assert scaler_state(killed / f'iter_{i}.pth') == expected[i], i
