"""AtomicCheckpointHook: a full disk keeps the last checkpoint, old ones go
only after the new one is complete, in real training runs."""
import errno
import os

import pytest
import torch

import convseg  # noqa: F401
from convseg.engine.checkpoint_files import (find_resume_checkpoint,
                                             is_complete_checkpoint)
from convseg.engine.hooks import (RANDOM_STATE_KEY, AtomicCheckpointHook,
                                  CheckpointSaveError)
from convseg.fileio import temporary_path


def test_full_disk_keeps_the_last_checkpoint_with_max_keep_ckpts(
        tmp_path, ade_48x48, build_runner):
    runner, work = build_runner(tmp_path, ade_48x48, max_iters=4, max_keep=1)
    work.mkdir(parents=True, exist_ok=True)
    os.symlink('/dev/full', temporary_path(work / 'iter_4.pth'))
    with pytest.raises(CheckpointSaveError) as info:
        runner.train()
    message = str(info.value)
    assert (f'could not save checkpoint {work / "iter_4.pth"}: the disk is '
            'full') in message
    assert f'the last complete checkpoint is kept: {work / "iter_2.pth"}' \
        in message
    # mmengine's CheckpointHook deletes iter_2 before writing iter_4
    assert is_complete_checkpoint(work / 'iter_2.pth')
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')
    assert sorted(p for p in os.listdir(work) if p.endswith(('.pth', '.tmp'))
                  ) == ['iter_2.pth']


def test_max_keep_ckpts_removes_the_oldest_after_the_new_one(
        tmp_path, ade_48x48, build_runner):
    runner, work = build_runner(tmp_path, ade_48x48, max_iters=6, max_keep=2)
    runner.train()
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == [
        'iter_4.pth', 'iter_6.pth']
    assert find_resume_checkpoint(work) == str(work / 'iter_6.pth')
    checkpoint = torch.load(work / 'iter_6.pth', weights_only=True)
    assert checkpoint['message_hub']['runtime_info']['keep_ckpt_ids'] == [4, 6]
    assert set(checkpoint[RANDOM_STATE_KEY]) == {'python', 'numpy', 'torch',
                                                'cuda'}


def test_save_best_keeps_the_old_best_until_the_new_one_is_complete(
        tmp_path, ade_48x48, build_runner):
    def best_miou(cfg):
        cfg.default_hooks.checkpoint.update(save_best='mIoU', rule='greater')

    runner, work = build_runner(tmp_path, ade_48x48, max_iters=1, interval=1,
                                edit=best_miou)
    runner.train()
    hook = next(h for h in runner.hooks
                if isinstance(h, AtomicCheckpointHook))
    hook._save_best_checkpoint(runner, {'mIoU': 10.0})
    first = work / 'best_mIoU_iter_1.pth'
    second = work / 'best_mIoU_iter_2.pth'
    assert is_complete_checkpoint(first)
    runner.train_loop._iter = 2  # a better score one iteration later
    os.symlink('/dev/full', temporary_path(second))  # its save fails
    with pytest.raises(CheckpointSaveError) as info:
        hook._save_best_checkpoint(runner, {'mIoU': 20.0})
    assert info.value.errno == errno.ENOSPC
    assert is_complete_checkpoint(first)
    assert not second.exists()
    hook._save_best_checkpoint(runner, {'mIoU': 30.0})
    assert is_complete_checkpoint(second)
    assert not first.exists()
    assert sorted(p for p in os.listdir(work) if p.endswith(('.pth', '.tmp'))
                  ) == ['best_mIoU_iter_2.pth', 'iter_1.pth', 'iter_2.pth']
