"""Atomic file writes: every file convseg writes goes through here.

:func:`atomic_write` yields a temporary path beside the destination
(``.<name>.<pid>.tmp``, or ``.<name>.<pid>.tmp<suffix>`` for writers that
pick a format from the suffix). Once the caller has written it, the file is
fsync'ed, given the permissions a plain ``open`` would give under the current
umask (0644 under umask 022), and renamed over the destination, so the
destination only ever holds the old file or the complete new one. On any
error the temporary file is removed and the error propagates. After a
successful write, temporary files of the same destination left by killed
processes are removed.
"""
from __future__ import annotations

import contextlib
import glob
import os
import stat
from collections.abc import Iterator

PathLike = str | os.PathLike


def temporary_path(path: PathLike, keep_suffix: bool = False) -> str:
    """The temporary file this process writes ``path`` through.

    With ``keep_suffix`` the name ends in ``path``'s suffix too (``.png``,
    ``.mp4``), for writers that choose the format from it.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    suffix = os.path.splitext(name)[1] if keep_suffix else ''
    return os.path.join(folder, f'.{name}.{os.getpid()}.tmp{suffix}')


def _writer_alive(tmp: str, name: str) -> bool:
    """Whether the process named in ``tmp`` (``.<name>.<pid>.tmp``) runs."""
    pid = os.path.basename(tmp)[len(name) + 2:].split('.', 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_temporaries(path: str) -> list[str]:
    # a live writer of the same file (another rank writing the same padded
    # sample) keeps its temporary file
    folder, name = os.path.split(path)
    found = glob.glob(os.path.join(folder, f'.{glob.escape(name)}.*.tmp*'))
    return [tmp for tmp in found if not _writer_alive(tmp, name)]


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    with contextlib.suppress(OSError, ValueError):
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(folder: str) -> None:
    # Makes the rename itself durable; some file systems refuse to open a
    # directory for this, which only weakens durability, never atomicity.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _seal(tmp: str) -> None:
    """fsync a written regular file and give it the umask's permissions."""
    if not stat.S_ISREG(os.lstat(tmp).st_mode):
        return
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())


@contextlib.contextmanager
def atomic_write(path: PathLike, keep_suffix: bool = False) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``path``.

    The destination's folder is created if needed. ``keep_suffix``: see
    :func:`temporary_path`.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    tmp = temporary_path(path, keep_suffix)
    try:
        yield tmp
        finish_atomic_write(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def finish_atomic_write(tmp: PathLike, path: PathLike) -> None:
    """Put the written ``tmp`` (a :func:`temporary_path`) in ``path``'s place.

    For writers whose temporary file outlives one block (a video written
    frame by frame); :func:`atomic_write` calls it on success. The caller
    removes ``tmp`` if this raises.
    """
    tmp, path = os.fspath(tmp), os.fspath(path)
    _seal(tmp)
    os.replace(tmp, path)
    _fsync_directory(os.path.dirname(path) or '.')
    for stale in _stale_temporaries(path):
        with contextlib.suppress(OSError):
            os.unlink(stale)


def atomic_write_bytes(data: bytes, path: PathLike) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        f.write(data)


def atomic_write_text(text: str, path: PathLike,
                      encoding: str = 'utf-8') -> None:
    """Write ``text`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as tmp, \
            open(tmp, 'w', encoding=encoding, newline='') as f:
        f.write(text)
