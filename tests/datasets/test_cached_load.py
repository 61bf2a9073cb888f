"""CachedLoad: the loading transforms run once per sample, later draws are
copies from memory, and what the pipeline gives is unchanged."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS

import convseg  # noqa: F401
from convseg.datasets import CachedLoad

LOADING = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
AFTER = [dict(type='RandomFlip', prob=0.5, direction='horizontal'),
         dict(type='RandomFlip', prob=0.5, direction='vertical'),
         dict(type='PackSegInputs')]


@pytest.fixture(autouse=True)
def mmseg_scope():
    """mmseg's transforms by name, as under a runner of an mmseg config."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


def scenes(root: Path, pipeline: list):
    return DATASETS.build(dict(
        type='SyntheticScenesDataset', data_root=str(root),
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        pipeline=pipeline))


def draws(dataset, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every sample twice, flips drawn from ``seed``: (image, labels)."""
    np.random.seed(seed)
    out = []
    for index in list(range(len(dataset))) * 2:
        sample = dataset[index]
        out.append((sample['inputs'].numpy().copy(),
                    sample['data_samples'].gt_sem_seg.data.numpy().copy()))
    return out


@pytest.fixture
def scenes_copy(scenes_root: str, tmp_path: Path) -> Path:
    """The shared scene dataset copied, so that a test may delete files."""
    root = tmp_path / 'scenes'
    shutil.copytree(scenes_root, root)
    return root


def test_cached_pipeline_gives_the_same_samples_and_reads_each_file_once(
        scenes_copy: Path) -> None:
    plain = scenes(scenes_copy, LOADING + AFTER)
    cached = scenes(scenes_copy,
                    [dict(type='CachedLoad', transforms=LOADING)] + AFTER)
    cache = cached.pipeline.transforms[0]
    assert isinstance(cache, CachedLoad)
    expected = draws(plain, seed=5)
    got = draws(cached, seed=5)
    assert len(got) == 2 * len(plain) == 48
    for (img, labels), (img2, labels2) in zip(expected, got):
        np.testing.assert_array_equal(img, img2)
        np.testing.assert_array_equal(labels, labels2)
    # the flips differ between draws, so the comparison above can fail
    assert any((a[0] != b[0]).any() for a, b in zip(expected, expected[24:]))
    # 64x64 scenes: an RGB image and a label map each
    assert cache.held_bytes == 24 * (64 * 64 * 3 + 64 * 64)

    # served from memory now: the files can go
    shutil.rmtree(scenes_copy / 'images' / 'training')
    with pytest.raises(FileNotFoundError):
        plain[0]
    for (img, labels), (img2, labels2) in zip(expected[:24],
                                              draws(cached, seed=5)):
        np.testing.assert_array_equal(img, img2)
        np.testing.assert_array_equal(labels, labels2)


def test_changing_a_drawn_sample_leaves_the_cache_as_it_was(
        scenes_copy: Path) -> None:
    cache = CachedLoad(LOADING)
    info = dict(img_path=str(scenes_copy / 'images/training/scene_000000.jpg'),
                seg_map_path=str(
                    scenes_copy / 'annotations/training/scene_000000.png'),
                reduce_zero_label=True, seg_fields=[])
    first = cache(dict(info, seg_fields=[]))
    reference = first['img'].copy()
    assert first['seg_fields'] == ['gt_seg_map']
    first['img'][:] = 0
    first['gt_seg_map'][:] = 7
    first['seg_fields'].append('extra')
    for _ in range(2):  # the first draw ran the loading, the others hit
        again = cache(dict(info, seg_fields=[]))
        np.testing.assert_array_equal(again['img'], reference)
        assert again['seg_fields'] == ['gt_seg_map']
        assert (again['gt_seg_map'] != 7).any()
        again['img'][:] = 0
        again['gt_seg_map'][:] = 7
        again['seg_fields'].append('extra')


def test_beyond_max_bytes_samples_are_loaded_from_disk(
        scenes_copy: Path) -> None:
    one_sample = 64 * 64 * 3 + 64 * 64
    cached = scenes(scenes_copy, [dict(type='CachedLoad', transforms=LOADING,
                                       max_bytes=2 * one_sample)] + AFTER)
    for index in range(len(cached)):
        cached[index]
    assert cached.pipeline.transforms[0].held_bytes == 2 * one_sample
    shutil.rmtree(scenes_copy / 'images' / 'training')
    cached[0], cached[1]  # the two held
    with pytest.raises(FileNotFoundError):
        cached[2]


def test_a_bad_max_bytes_is_named() -> None:
    with pytest.raises(ValueError) as err:
        CachedLoad(LOADING, max_bytes=-1)
    assert str(err.value) == (
        'CachedLoad: max_bytes must be a non-negative int, got -1')
