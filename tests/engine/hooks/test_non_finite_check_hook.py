"""NonFiniteCheckHook: an update that overflows is never saved."""
import os

import pytest

import convseg  # noqa: F401
from convseg.engine.hooks import NonFiniteWeightsError


def test_overflowing_update_is_never_saved(tmp_path, ade_48x48, build_runner):
    # A finite loss whose SGD step overflows float32: the loss of iteration 1
    # is about 1e10, its gradients times lr 3e38 are not representable.
    def blow_up(cfg):
        cfg.model.decode_head.loss_decode.loss_weight = 1e10
        cfg.optim_wrapper.optimizer = dict(type='SGD', lr=3e38, weight_decay=0)

    runner, work = build_runner(tmp_path, ade_48x48, max_iters=2, interval=1,
                                edit=blow_up)
    with pytest.raises(NonFiniteWeightsError) as info:
        runner.train()
    assert str(info.value).startswith(
        'refusing to save a checkpoint at iteration 1: weight backbone.')
    assert 'The last checkpoint, none (no checkpoint yet), is kept' in str(
        info.value)
    assert not [p for p in os.listdir(work) if p.endswith(('.pth', '.tmp'))]
    assert not (work / 'last_checkpoint').exists()
