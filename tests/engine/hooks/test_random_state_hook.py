"""RandomStateHook's states survive a weights-only checkpoint round trip."""
import random

import numpy as np
import torch

from convseg.engine.hooks import RANDOM_STATE_KEY
from convseg.engine.hooks.random_state_hook import (capture_random_state,
                                                   restore_random_state,
                                                   state_from_plain,
                                                   state_to_plain)


def _draws():
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(),
            np.random.randn(), torch.rand(3).tolist())


def test_random_state_survives_a_weights_only_round_trip(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian in Python's state
    np.random.randn()  # and in numpy's
    state = capture_random_state()
    expected = _draws()
    path = tmp_path / 'rng.pth'
    torch.save({RANDOM_STATE_KEY: state_to_plain(state)}, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        str(path)) == []
    loaded = torch.load(path, weights_only=True)[RANDOM_STATE_KEY]
    _draws()  # move every generator on
    restore_random_state(state_from_plain(loaded))
    assert _draws() == expected
