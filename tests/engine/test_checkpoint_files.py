"""A work directory's checkpoint files: complete or not, which to resume."""
import zipfile

import pytest
import torch

from convseg.engine.checkpoint_files import (find_resume_checkpoint,
                                             is_complete_checkpoint)


def _save(obj, path):
    torch.save(obj, path)
    return path


def test_is_complete_checkpoint_rejects_truncated_files(tmp_path):
    whole = _save({'state_dict': {'w': torch.arange(1000.)}},
                  tmp_path / 'iter_2.pth')
    data = whole.read_bytes()
    cut = tmp_path / 'iter_4.pth'
    cut.write_bytes(data[:len(data) // 2])
    assert is_complete_checkpoint(whole)
    assert not is_complete_checkpoint(cut)
    assert not is_complete_checkpoint(tmp_path / 'missing.pth')
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(cut)


def test_find_resume_checkpoint_picks_the_newest_complete_one(tmp_path):
    assert find_resume_checkpoint(tmp_path) is None
    for step in (2, 4, 10):
        _save({'w': torch.full((10,), float(step))},
              tmp_path / f'iter_{step}.pth')
    pointer = tmp_path / 'last_checkpoint'
    # a temporary file is never chosen, even the newest
    (tmp_path / '.iter_12.pth.4242.tmp').write_bytes(b'PK partial')
    # a pointer one save behind (killed between the save and its update):
    # the newer complete checkpoint wins
    pointer.write_text(str(tmp_path / 'iter_4.pth'))
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
    pointer.write_text(str(tmp_path / 'iter_10.pth'))
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
    # pointer to a truncated file: the newest complete checkpoint instead
    data = (tmp_path / 'iter_10.pth').read_bytes()
    (tmp_path / 'iter_12.pth').write_bytes(data[:100])
    pointer.write_text(str(tmp_path / 'iter_12.pth'))
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
    pointer.write_text('')  # killed while rewriting the pointer
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
    pointer.unlink()
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
