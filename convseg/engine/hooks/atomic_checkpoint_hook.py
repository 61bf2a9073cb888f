"""``AtomicCheckpointHook``: crash-safe checkpoints.

Checkpoints and the ``last_checkpoint`` pointer are written atomically, old
checkpoints are removed only after the new one is complete, and a failed save
(a full disk) stops the run with a message naming the file and the checkpoint
kept.

A save runs on rank 0 only; when it fails there, every rank of a distributed
run stops at once with rank 0's message (:func:`raise_on_every_rank`), where
the other ranks would otherwise wait in their next collective until a timeout.
"""
from __future__ import annotations

import contextlib
import errno
import os
import pickle
from collections.abc import Iterator
from typing import Any

from mmengine.dist import (broadcast_object_list, get_rank, get_world_size,
                           is_main_process)
from mmengine.hooks import CheckpointHook
from mmseg.registry import HOOKS

from ...errors import ConvsegError
from ...fileio import atomic_write_text
from ..checkpoint_files import LAST_CHECKPOINT_FILE, last_checkpoint


class CheckpointSaveError(ConvsegError, OSError):
    """A checkpoint could not be written (e.g. the disk is full)."""

    tool_hint = 'With tools/train.py, add --resume.'


def _portable(error: BaseException | None) -> BaseException | None:
    """``error`` as the other ranks should raise it (picklable)."""
    if error is None:
        return None
    if isinstance(error, ConvsegError):
        try:
            pickle.dumps(error)
            return error
        except Exception:  # noqa: BLE001  (an unpicklable argument)
            pass
    return RuntimeError(f'rank 0 stopped with {type(error).__name__}: '
                        f'{error}')


def raise_on_every_rank(error: BaseException | None) -> None:
    """Raise rank 0's ``error`` on every rank; return if it is ``None``.

    Every rank calls this at the same point with its own outcome (``None``
    when it did not fail). Rank 0 raises its own error; the others raise a
    copy: the same convseg error class with the same message, or a
    ``RuntimeError`` naming another exception. Outside a distributed run it
    just raises ``error`` if set.
    """
    shared = None
    if get_world_size() > 1:
        payload = [_portable(error) if get_rank() == 0 else None]
        broadcast_object_list(payload, src=0)
        shared = payload[0]
    if error is not None:
        raise error
    if shared is not None:
        raise shared


class _DeferredRemoval:
    """A file backend whose removals wait for :meth:`remove_now`."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.pending: list[str] = []

    def remove(self, path: str) -> None:
        """Note ``path`` for removal."""
        self.pending.append(path)

    def rmtree(self, path: str) -> None:
        """Note ``path`` (a folder) for removal."""
        self.pending.append(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def remove_now(self, keep: set[str]) -> None:
        """Remove the noted paths, except those in ``keep``."""
        for path in self.pending:
            if path in keep:
                continue
            if self.backend.isfile(path):
                self.backend.remove(path)
            elif self.backend.isdir(path):
                self.backend.rmtree(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with crash-safe writes.

    Takes the same arguments. For a local ``out_dir`` without explicit
    ``backend_args`` it writes through the ``'atomic_local'`` backend
    (temporary file, flush, fsync, rename). Differences from the parent:
    ``last_checkpoint`` is replaced atomically and only after the checkpoint
    is complete, and with ``max_keep_ckpts`` the oldest checkpoint is deleted
    only after the new one exists; the same for the previous best checkpoint
    (``save_best``), removed only once the new best is complete. An
    ``OSError`` while saving becomes a :class:`CheckpointSaveError` that
    names the file and the checkpoint kept. Saving runs on rank 0 only; a
    failure there (this error, or ``NonFiniteWeightsError`` from a hook) stops
    every rank with the same message instead of leaving the others waiting.
    """

    _sharing = False

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
        kept = last_checkpoint(runner)
        try:
            yield
        except CheckpointSaveError:
            raise
        except OSError as err:
            raise self._save_error(err, path, kept) from err

    @contextlib.contextmanager
    def _on_every_rank(self) -> Iterator[None]:
        """Run a save; an error on rank 0 stops every rank with its message.

        Nested saves (the best checkpoint saves the latest one too) share
        their outcome once, in the outermost block.
        """
        if self._sharing:
            yield
            return
        self._sharing = True
        error = None
        try:
            yield
        except Exception as err:  # noqa: BLE001  (raised again below)
            error = err
        finally:
            self._sharing = False
        raise_on_every_rank(error)

    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: dict) -> None:
        with self._on_every_rank():
            self._save_with_step(runner, step, meta)

    def _save_with_step(self, runner, step: int, meta: dict) -> None:
        filename = self.filename_tmpl.format(step)
        path = self.file_backend.join_path(self.out_dir, filename)
        kept = last_checkpoint(runner)
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

    def _best_state(self, runner) -> tuple:
        """The best checkpoint(s) and score(s) as the hook knows them."""
        info = {k: v for k, v in runner.message_hub.runtime_info.items()
                if k.startswith(('best_score', 'best_ckpt'))}
        return (getattr(self, 'best_ckpt_path', None),
                dict(getattr(self, 'best_ckpt_path_dict', {})), info)

    def _restore_best_state(self, runner, state: tuple) -> None:
        """After a failed save: the previous best is still the best."""
        path, paths, info = state
        if hasattr(self, 'best_ckpt_path'):
            self.best_ckpt_path = path
        if hasattr(self, 'best_ckpt_path_dict'):
            self.best_ckpt_path_dict = paths
        for key, value in info.items():
            runner.message_hub.update_info(key, value)

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        where = f'the best checkpoint in {self.out_dir}'
        backend = self.file_backend
        deferred = self.file_backend = _DeferredRemoval(backend)
        before = self._best_state(runner)
        try:
            with self._on_every_rank(), self._explain_errors(runner, where):
                super()._save_best_checkpoint(runner, metrics)
        except BaseException:
            self._restore_best_state(runner, before)
            raise
        finally:
            self.file_backend = backend
        best = {getattr(self, 'best_ckpt_path', None),
                *getattr(self, 'best_ckpt_path_dict', {}).values()}
        deferred.remove_now(keep=best)
