"""``RandomStateHook``: separate random streams for data and model, kept in
checkpoints, so that a resumed run repeats an uninterrupted one exactly.

The helpers capture, restore and store the global random states of a process.
A state covers Python's ``random``, numpy's global generator, torch's CPU
generator and the CUDA generators. :func:`state_to_plain` turns one into
tensors, ints, floats and None only, which a weights-only ``torch.load``
reads back, so checkpoints that carry it need no unpickling of other types.
"""
from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmseg.registry import HOOKS

RandomState = dict


def capture_random_state() -> RandomState:
    """Snapshot every global random generator of this process."""
    cuda = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = list(torch.cuda.get_rng_state_all())
    return dict(python=random.getstate(),
                numpy=np.random.get_state(legacy=True),
                torch=torch.get_rng_state(), cuda=cuda)


def restore_random_state(state: RandomState) -> None:
    """Put back a snapshot of :func:`capture_random_state`.

    CUDA states are restored only when this process sees as many devices as
    the one that took the snapshot.
    """
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'].cpu())
    cuda = state.get('cuda') or []
    if cuda and torch.cuda.is_available() and \
            torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def seed_random_state(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(seed: int, stream: int) -> int:
    """A seed for an independent stream ``stream`` of a run seeded ``seed``."""
    sequence = np.random.SeedSequence(seed % 2**32, spawn_key=(stream,))
    return int(sequence.generate_state(1)[0])


def state_to_plain(state: RandomState) -> dict[str, Any]:
    """``state`` as tensors and numbers only (weights-only loadable)."""
    version, internal, gauss_next = state['python']
    _, keys, pos, has_gauss, cached_gaussian = state['numpy']
    return dict(
        python=dict(version=int(version),
                    internal=torch.tensor(internal, dtype=torch.int64),
                    gauss_next=gauss_next),
        numpy=dict(keys=torch.from_numpy(keys.astype(np.int64)),
                   pos=int(pos), has_gauss=int(has_gauss),
                   cached_gaussian=float(cached_gaussian)),
        torch=state['torch'].cpu().clone(),
        cuda=[s.cpu().clone() for s in state.get('cuda') or []])


def state_from_plain(plain: dict[str, Any]) -> RandomState:
    """The inverse of :func:`state_to_plain`."""
    py, npy = plain['python'], plain['numpy']
    return dict(
        python=(py['version'], tuple(py['internal'].tolist()),
                py['gauss_next']),
        numpy=('MT19937', npy['keys'].cpu().numpy().astype(np.uint32),
               npy['pos'], npy['has_gauss'], npy['cached_gaussian']),
        torch=plain['torch'].cpu(),
        cuda=list(plain.get('cuda') or []))


#: the key under which :class:`RandomStateHook` stores the random states.
RANDOM_STATE_KEY = 'random_state'
_MODEL_STREAM = 1


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Separate random streams for data and model, kept in checkpoints.

    Data loading and the model draw from two streams. The data stream is the
    process's global generators as mmengine seeds them; the model stream
    (drop path, dropout, ...) starts from a seed derived from the run's seed
    and is swapped in for each training step, from ``before_train_iter`` to
    ``after_train_iter``. Every checkpoint gets the model stream under
    ``random_state`` (plain tensors and numbers, see
    :func:`state_to_plain`). A resumed run gets the model stream
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
        self._model_state: dict | None = None
        self._data_state: dict | None = None
        self._loaded: tuple[Any, dict | None] | None = None
        self._outside_val: dict | None = None

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
                         outputs: dict | None = None) -> None:
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
