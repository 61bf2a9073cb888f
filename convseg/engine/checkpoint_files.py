"""A work directory's checkpoint files: written atomically, found complete.

A checkpoint is written through :func:`convseg.fileio.atomic_write`: a hidden
temporary file beside its final name (``.<name>.<pid>.tmp``), fsync'ed and
renamed into place, so the final name only ever holds a complete file. A run
killed while saving leaves the previous checkpoint and the
``last_checkpoint`` pointer untouched; the temporary file it leaves behind is
never picked up by a resume and is removed the next time the same checkpoint
is saved.

:class:`AtomicLocalBackend` is an mmengine file backend (registered as
``'atomic_local'``) with these writes; ``AtomicCheckpointHook`` selects it
for local work directories. :func:`find_resume_checkpoint` is what
``tools/train.py --resume`` uses to pick the newest complete checkpoint.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import zipfile

from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import print_log

from .. import fileio
from ..fileio import PathLike

LAST_CHECKPOINT_FILE = 'last_checkpoint'
_CHECKPOINT_NAME = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` and ``put_text``."""

    def put(self, obj: bytes, filepath: PathLike) -> None:
        """Write bytes atomically (temporary file, fsync, rename)."""
        fileio.atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath: PathLike,
                 encoding: str = 'utf-8') -> None:
        """Write text atomically (temporary file, fsync, rename)."""
        fileio.atomic_write_text(obj, filepath, encoding)


register_backend('atomic_local', AtomicLocalBackend, force=True)


def is_complete_checkpoint(path: PathLike) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file.

    torch writes a zip archive whose central directory comes last, so a file
    cut short by a crash or a full disk fails this test. Cheap: it reads the
    archive's directory, not the tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith('/data.pkl') or n == 'data.pkl'
                       for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _numbered_checkpoints(folder: str) -> list[str]:
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _CHECKPOINT_NAME.match(entry.name)
            if match and entry.is_file():
                found.append((int(match.group(1)), entry.path))
    return [path for _, path in sorted(found, reverse=True)]


def _number(path: str) -> int | None:
    match = _CHECKPOINT_NAME.match(os.path.basename(path))
    return int(match.group(1)) if match else None


def find_resume_checkpoint(work_dir: PathLike) -> str | None:
    """The checkpoint an automatic resume should load, or None to start anew.

    The newest complete checkpoint: the complete ``iter_<n>.pth`` /
    ``epoch_<n>.pth`` with the largest ``n`` in ``work_dir`` and in the
    folder of the file that ``work_dir/last_checkpoint`` names, or that file
    itself when it is complete and no numbered checkpoint is newer (a crash
    between a save and the pointer's update leaves the pointer one save
    behind). Truncated and temporary files are never chosen.
    """
    work_dir = os.fspath(work_dir)
    pointer = os.path.join(work_dir, LAST_CHECKPOINT_FILE)
    named = ''
    with contextlib.suppress(OSError):
        with open(pointer, encoding='utf-8') as f:
            named = f.read().strip()
    folders = [work_dir]
    if named and os.path.dirname(named) not in ('', work_dir):
        folders.insert(0, os.path.dirname(named))
    newest: tuple[int, str] | None = None
    for folder in folders:
        for candidate in _numbered_checkpoints(folder):
            if is_complete_checkpoint(candidate):
                step = _number(candidate)
                if newest is None or step > newest[0]:
                    newest = (step, candidate)
                break
    named_complete = bool(named) and is_complete_checkpoint(named)
    if named_complete:
        step = _number(named)
        if newest is None or step is None or step >= newest[0]:
            return named
    if newest is None:
        return None
    if named:
        state = ('older than the newest complete checkpoint' if named_complete
                 else 'missing or incomplete')
        print_log(
            f'{pointer} names {named}, which is {state}; resuming from '
            f'{newest[1]}, the newest complete checkpoint.',
            logger='current', level=logging.WARNING)
    return newest[1]


def last_checkpoint(runner) -> str:
    """The last complete checkpoint of ``runner``'s run, for messages."""
    return (find_resume_checkpoint(runner.work_dir)
            or 'none (no checkpoint yet)')
