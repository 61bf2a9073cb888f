"""Hooks that keep long training runs safe, registered in mmseg's ``HOOKS``.

- ``AtomicCheckpointHook`` (for ``default_hooks.checkpoint``): checkpoints and
  the ``last_checkpoint`` pointer are written atomically, old checkpoints are
  removed only after the new one is complete, and a failed save (a full disk)
  stops the run with a message naming the file and the checkpoint kept.
- ``RandomStateHook``: data loading and the model draw from separate random
  streams; checkpoints carry the model's, so a resumed run repeats an
  uninterrupted one exactly, and validation never moves either stream.
- ``NonFiniteCheckHook``: a non-finite loss stops the run naming the
  iteration and the images of the batch; a checkpoint holding non-finite
  weights is never written.
- ``CheckpointMatchHook``: a checkpoint whose head has another number of
  classes, or whose backbone is another arch, is refused before it is loaded.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
from typing import Any, Iterator, Optional

import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ..errors import ConvsegError
from ..fileio import atomic_write_text
from .checkpoint_io import LAST_CHECKPOINT_FILE, find_resume_checkpoint
from .checkpoint_match import check_checkpoint_matches_model
from .random_state import (capture_random_state, derived_seed,
                           restore_random_state, seed_random_state,
                           state_from_plain, state_to_plain)

#: the key under which :class:`RandomStateHook` stores the random states.
RANDOM_STATE_KEY = 'random_state'
_MODEL_STREAM = 1


class CheckpointSaveError(ConvsegError, OSError):
    """A checkpoint could not be written (e.g. the disk is full)."""

    tool_hint = 'With tools/train.py, add --resume.'


class NonFiniteLossError(ConvsegError, FloatingPointError):
    """The training loss became NaN or infinite."""


class NonFiniteWeightsError(ConvsegError, FloatingPointError):
    """A checkpoint was about to be saved with NaN or infinite weights."""


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if is_model_wrapper(model) else model


def _last_checkpoint(runner) -> str:
    """The last complete checkpoint of the run, for messages."""
    return (find_resume_checkpoint(runner.work_dir)
            or 'none (no checkpoint yet)')


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with crash-safe writes.

    Takes the same arguments. For a local ``out_dir`` without explicit
    ``backend_args`` it writes through the ``'atomic_local'`` backend
    (temporary file, flush, fsync, rename). Differences from the parent:
    ``last_checkpoint`` is replaced atomically and only after the checkpoint
    is complete, and with ``max_keep_ckpts`` the oldest checkpoint is deleted
    only after the new one exists. An ``OSError`` while saving becomes a
    :class:`CheckpointSaveError` that names the file and the checkpoint kept.
    """

    def before_train(self, runner) -> None:
        """Pick the atomic backend for local folders, then as the parent."""
        out_dir = str(self.out_dir or runner.work_dir)
        if (self.backend_args is None and self.file_client_args is None
                and '://' not in out_dir):
            self.backend_args = dict(backend='atomic_local')
        super().before_train(runner)

    @staticmethod
    def _save_error(err: OSError, path: str, kept: str) -> CheckpointSaveError:
        reason = err.strerror or str(err)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            reason = f'the disk is full ({reason})'
        return CheckpointSaveError(
            err.errno,
            f'could not save checkpoint {path}: {reason}. Nothing incomplete '
            f'was left under that name and the last complete checkpoint is '
            f'kept: {kept}. Free space there (or set '
            f'default_hooks.checkpoint.out_dir / max_keep_ckpts), then '
            f'resume the run (resume=True in the config).')

    @contextlib.contextmanager
    def _explain_errors(self, runner, path: str) -> Iterator[None]:
        kept = _last_checkpoint(runner)
        try:
            yield
        except CheckpointSaveError:
            raise
        except OSError as err:
            raise self._save_error(err, path, kept) from err

    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: dict) -> None:
        filename = self.filename_tmpl.format(step)
        path = self.file_backend.join_path(self.out_dir, filename)
        kept = _last_checkpoint(runner)
        outdated = None
        if self.max_keep_ckpts > 0 and (not self.keep_ckpt_ids
                                        or self.keep_ckpt_ids[-1] != step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        # The checkpoint records itself as the latest one, as in mmengine.
        self.last_ckpt = path
        runner.message_hub.update_info('last_ckpt', path)
        try:
            runner.save_checkpoint(
                self.out_dir, filename, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta, by_epoch=self.by_epoch,
                backend_args=self.backend_args, **self.args)
            if is_main_process():
                atomic_write_text(
                    path, os.path.join(runner.work_dir, LAST_CHECKPOINT_FILE))
        except OSError as err:
            raise self._save_error(err, path, kept) from err
        if outdated is not None and is_main_process():
            old = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)
            elif self.file_backend.isdir(old):
                self.file_backend.rmtree(old)

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        where = f'the best checkpoint in {self.out_dir}'
        with self._explain_errors(runner, where):
            super()._save_best_checkpoint(runner, metrics)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Separate random streams for data and model, kept in checkpoints.

    Data loading and the model draw from two streams. The data stream is the
    process's global generators as mmengine seeds them; the model stream
    (drop path, dropout, ...) starts from a seed derived from the run's seed
    and is swapped in for each training step, from ``before_train_iter`` to
    ``after_train_iter``. Every checkpoint gets the model stream under
    ``random_state`` (plain tensors and numbers, see
    :mod:`convseg.engine.random_state`). A resumed run gets the model stream
    back from there, and the data stream because mmengine replays the data
    loader to the position where the run stopped: the replay draws the same
    numbers as the original loading did, in the main process with
    ``num_workers=0`` and in the workers (which mmengine seeds from the
    config's seed) otherwise. Validation runs on a copy of the states and
    leaves them as they were, since a resumed run does not repeat it.

    This holds for ``IterBasedTrainLoop`` (all configs here), whose resume
    replays the loader; mmengine's epoch loop resumes at an epoch boundary
    without a replay.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._model_state: Optional[dict] = None
        self._data_state: Optional[dict] = None
        self._loaded: Optional[tuple[Any, Optional[dict]]] = None
        self._outside_val: Optional[dict] = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the checkpoint's model stream in case this is a resume."""
        meta = checkpoint.get('meta') or {}
        self._loaded = (meta.get('iter'), checkpoint.get(RANDOM_STATE_KEY))

    def before_train(self, runner) -> None:
        """Take the model stream from a resumed checkpoint, if any."""
        loaded, self._loaded = self._loaded, None
        self._model_state = None
        if runner.iter == 0 or loaded is None or loaded[0] != runner.iter:
            return
        if loaded[1] is None:
            print_log(
                f'The checkpoint resumed at iteration {runner.iter} holds no '
                'random state; the model continues with a fresh random '
                'stream and will not repeat an uninterrupted run exactly.',
                logger='current', level=logging.WARNING)
            return
        self._model_state = state_from_plain(loaded[1])
        if get_world_size() > 1 and runner.cfg.get(
                'randomness', {}).get('diff_rank_seed', False):
            print_log(
                'randomness.diff_rank_seed is set: checkpoints hold the '
                'model random stream of rank 0 only, which every rank '
                'restores.', logger='current', level=logging.WARNING)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Any = None) -> None:
        """Put the data stream aside and switch to the model stream."""
        self._data_state = capture_random_state()
        if self._model_state is None:
            seed_random_state(derived_seed(runner.seed, _MODEL_STREAM))
        else:
            restore_random_state(self._model_state)

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        """Put the model stream aside and switch back to the data stream."""
        self._model_state = capture_random_state()
        if self._data_state is not None:
            restore_random_state(self._data_state)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the model stream in ``checkpoint``."""
        if self._model_state is not None:
            checkpoint[RANDOM_STATE_KEY] = state_to_plain(self._model_state)

    def before_val(self, runner) -> None:
        """Remember the random states before validation."""
        self._outside_val = capture_random_state()

    def after_val(self, runner) -> None:
        """Put the random states back as they were before validation."""
        if self._outside_val is not None:
            restore_random_state(self._outside_val)
            self._outside_val = None


def _batch_files(data_batch: Any) -> list[str]:
    """Image and label paths of a batch's data samples."""
    samples = data_batch.get('data_samples', []) if isinstance(
        data_batch, dict) else []
    return [str(sample.get(key)) for sample in samples
            for key in ('img_path', 'seg_map_path')
            if hasattr(sample, 'get') and sample.get(key)]


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Stop on a NaN/inf loss; never save NaN/inf weights.

    After every training iteration the losses in the step's outputs are
    checked (in a distributed run every rank stops when one rank sees a
    non-finite loss). Before any checkpoint is written its ``state_dict`` is
    checked, so an update that overflowed the weights is never saved.

    Args:
        check_weights: check the state dict before saving (default True).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, check_weights: bool = True) -> None:
        self.check_weights = check_weights

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        """Raise :class:`NonFiniteLossError` on a NaN or infinite loss."""
        bad = {}
        for name, value in (outputs or {}).items():
            if 'loss' not in name:
                continue
            value = torch.as_tensor(value).detach()
            if not bool(torch.isfinite(value).all()):
                bad[name] = value.float().mean().item()
        flag = torch.tensor(float(bool(bad)))
        if get_world_size() > 1:
            all_reduce(flag, op='max')
        if not flag.item():
            return
        iteration = runner.iter + 1
        if bad:
            losses = ', '.join(f'{k}={v}' for k, v in bad.items())
            files = _batch_files(data_batch)
            listed = ', '.join(files) if files else 'unknown'
            raise NonFiniteLossError(
                f'non-finite loss at iteration {iteration}: {losses}. The '
                f'batch held these files: {listed}. Training stopped; no '
                f'checkpoint of this iteration was written and the last '
                f'checkpoint is {_last_checkpoint(runner)}. Check these '
                'files (tools/check_dataset.py), lower the learning rate or '
                'clip gradients (optim_wrapper.clip_grad).')
        raise NonFiniteLossError(
            f'another rank saw a non-finite loss at iteration {iteration}; '
            'training stopped on every rank (its log names the images).')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Raise :class:`NonFiniteWeightsError` instead of saving NaN/inf."""
        if not self.check_weights:
            return
        for name, value in (checkpoint.get('state_dict') or {}).items():
            if not (torch.is_tensor(value) and value.is_floating_point()):
                continue
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                count = int((~finite).sum())
                raise NonFiniteWeightsError(
                    f'refusing to save a checkpoint at iteration '
                    f'{runner.iter + 1}: weight {name} holds {count} '
                    f'non-finite value(s) of {value.numel()}. The last '
                    f'checkpoint, {_last_checkpoint(runner)}, is kept. The '
                    'optimizer step overflowed: lower the learning rate or '
                    'clip gradients (optim_wrapper.clip_grad).')


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Refuse a checkpoint that does not fit the model before loading it.

    Runs on every checkpoint a runner loads (``load_from``, ``--resume``):
    a head with another number of classes or a backbone of another arch
    raises ``CheckpointMismatchError`` naming both values, where mmengine
    alone would only warn and go on with random weights.
    """

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Compare ``checkpoint`` with the runner's model."""
        source = runner.cfg.get('load_from') or 'being loaded'
        check_checkpoint_matches_model(_unwrap(runner.model), checkpoint,
                                       str(source))

