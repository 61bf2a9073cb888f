"""Stop every rank of a distributed run when the main process fails alone.

Some work runs on rank 0 only (mmengine saves checkpoints there). If it
fails, the other ranks would wait in their next collective until a timeout.
:func:`raise_on_every_rank`, called by every rank at the same point, makes
all of them raise at once with rank 0's message.
"""
from __future__ import annotations

import pickle

from mmengine.dist import broadcast_object_list, get_rank, get_world_size

from ..errors import ConvsegError


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
