"""convseg.fileio: atomic writes, their permissions and temporary files."""
from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import pytest
from PIL import Image

from convseg import fileio


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_permissions_are_those_of_a_plain_open(tmp_path, umask):
    plain = tmp_path / 'plain.txt'
    with open(plain, 'w') as f:
        f.write('x')
    fileio.atomic_write_text('x', tmp_path / 'atomic.txt')
    assert mode_of(tmp_path / 'atomic.txt') == mode_of(plain)
    assert mode_of(plain) == {0o022: 0o644, 0o077: 0o600,
                              0o002: 0o664}[umask]


def test_permissions_do_not_depend_on_how_the_writer_opened_it(tmp_path,
                                                               umask):
    # a writer that creates its file private (as tempfile.mkstemp does)
    target = tmp_path / 'model.pth'
    with fileio.atomic_write(target) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b'weights')
        os.close(fd)
    assert target.read_bytes() == b'weights'
    assert mode_of(target) == 0o666 & ~umask


def test_temporary_file_sits_beside_the_destination(tmp_path):
    target = tmp_path / 'out' / 'mask.png'
    with fileio.atomic_write(target, keep_suffix=True) as tmp:
        assert tmp == str(tmp_path / 'out' /
                          f'.mask.png.{os.getpid()}.tmp.png')
        assert not target.exists()
        Image.new('L', (3, 2), 7).save(tmp)  # PIL picks PNG from the suffix
    assert Image.open(target).format == 'PNG'
    assert os.listdir(tmp_path / 'out') == ['mask.png']


def test_stale_temporaries_of_that_file_are_removed(tmp_path):
    gone = []
    for _ in range(2):  # pids of processes that have ended
        child = subprocess.Popen([sys.executable, '-c', ''])
        child.wait()
        gone.append(child.pid)
    stale = [tmp_path / f'.a.png.{gone[0]}.tmp',
             tmp_path / f'.a.png.{gone[1]}.tmp.png']
    # another live process writing the same file keeps its temporary file
    others = [tmp_path / f'.b.png.{gone[0]}.tmp', tmp_path / 'a.png.txt',
              tmp_path / f'.a.png.{os.getppid()}.tmp']
    for path in stale + others:
        path.write_bytes(b'left by a killed run')
    fileio.atomic_write_bytes(b'new', tmp_path / 'a.png')
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['a.png'] + [p.name for p in others])


def test_an_error_while_writing_keeps_the_old_file(tmp_path):
    target = tmp_path / 'results.json'
    target.write_text('old')
    with pytest.raises(RuntimeError, match='^disk gone$'):
        with fileio.atomic_write(target) as tmp:
            with open(tmp, 'w') as f:
                f.write('half')
            raise RuntimeError('disk gone')
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['results.json']


def test_a_writer_that_writes_nothing_is_an_error(tmp_path):
    target = tmp_path / 'x.bin'
    with pytest.raises(FileNotFoundError):
        with fileio.atomic_write(target):
            pass
    assert os.listdir(tmp_path) == []


def test_atomic_write_replaces_whole_file_and_removes_stale_temporaries(
        tmp_path):
    target = tmp_path / 'iter_4.pth'
    stale = tmp_path / '.iter_4.pth.999999.tmp'
    stale.write_bytes(b'half a checkpoint from a killed run')
    fileio.atomic_write_bytes(b'first', target)
    assert target.read_bytes() == b'first'
    assert not stale.exists()
    fileio.atomic_write_bytes(b'second', target)
    assert target.read_bytes() == b'second'
    assert sorted(os.listdir(tmp_path)) == ['iter_4.pth']


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path):
    target = tmp_path / 'last_checkpoint'
    target.write_text('old')
    # the kernel's /dev/full answers every write with ENOSPC
    os.symlink('/dev/full', fileio.temporary_path(target))
    with pytest.raises(OSError) as info:
        fileio.atomic_write_bytes(b'new' * 1000, target)
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['last_checkpoint']
