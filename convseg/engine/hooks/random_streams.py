"""``RandomStateHook``: separate random streams for data and model, kept in
checkpoints, so that a resumed run repeats an uninterrupted one exactly."""
from __future__ import annotations

import logging
from typing import Any

from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmseg.registry import HOOKS

from ..random_state import (capture_random_state, derived_seed,
                            restore_random_state, seed_random_state,
                            state_from_plain, state_to_plain)

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
