"""The global random states of a process: capture, restore, store.

A state covers Python's ``random``, numpy's global generator, torch's CPU
generator and the CUDA generators. :func:`state_to_plain` turns one into
tensors, ints, floats and None only, which a weights-only ``torch.load``
reads back, so checkpoints that carry it need no unpickling of other types.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

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
