"""Synthetic datasets: real layouts and formats, determinism, atomic writes."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image, ImageDraw

import convseg  # noqa: F401
from convseg.datasets import synthetic
from convseg.datasets.synthetic import (SyntheticDatasetError,
                                        generate_ade20k, generate_cityscapes,
                                        generate_scenes)

# Cityscapes labelId -> trainId for the 19 evaluated classes (from the
# official label definitions); every other id is ignored (255).
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7,
                        21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
                        28: 15, 31: 16, 32: 17, 33: 18}
# labelIds of the Cityscapes names the generator uses ('cargroup' is drawn
# as 'car'; 'license plate' has id -1 and is not drawn).
CITYSCAPES_IDS = {'out of roi': 3, 'ego vehicle': 1, 'road': 7,
                  'sidewalk': 8, 'building': 11, 'pole': 17,
                  'traffic sign': 20, 'vegetation': 21, 'terrain': 22,
                  'sky': 23, 'person': 24, 'rider': 25, 'car': 26,
                  'cargroup': 26, 'license plate': -1}


def tree(path):
    """{relative path: bytes} of every file under ``path``."""
    out = {}
    for folder, _, files in os.walk(path):
        for f in files:
            full = osp.join(folder, f)
            with open(full, 'rb') as fh:
                out[osp.relpath(full, path)] = fh.read()
    return out


def test_ade20k_layout_and_formats(tmp_path):
    path = generate_ade20k(str(tmp_path), num_train=3, num_val=2,
                           size=(32, 48), seed=1)
    assert path == str(tmp_path / 'ADEChallengeData2016')
    for folder, tag, count in (('training', 'train', 3),
                               ('validation', 'val', 2)):
        names = [f'ADE_{tag}_{i:08d}' for i in range(1, count + 1)]
        assert sorted(os.listdir(osp.join(path, 'images', folder))) == [
            n + '.jpg' for n in names]
        assert sorted(os.listdir(osp.join(path, 'annotations', folder))) == [
            n + '.png' for n in names]
        for n in names:
            img = Image.open(osp.join(path, 'images', folder, n + '.jpg'))
            assert (img.format, img.mode, img.size) == ('JPEG', 'RGB',
                                                        (48, 32))
            ann = Image.open(osp.join(path, 'annotations', folder, n + '.png'))
            assert (ann.format, ann.mode, ann.size) == ('PNG', 'L', (48, 32))
            values = np.unique(np.asarray(ann))
            assert values.min() >= 0 and values.max() <= 150
            assert 0 in values and len(values) >= 3


def test_cityscapes_layout_polygons_and_label_ids(tmp_path):
    path = generate_cityscapes(str(tmp_path), num_train=4, num_val=2,
                               size=(64, 128), seed=3)
    assert path == str(tmp_path / 'cityscapes')
    stems = {'train': ['aachen/aachen_000000_000019',
                       'aachen/aachen_000001_000019',
                       'bochum/bochum_000000_000019',
                       'bremen/bremen_000000_000019'],
             'val': ['frankfurt/frankfurt_000000_000019',
                     'lindau/lindau_000000_000019']}
    for split, expected in stems.items():
        images = sorted(
            osp.relpath(osp.join(d, f), osp.join(path, 'leftImg8bit', split))
            for d, _, fs in os.walk(osp.join(path, 'leftImg8bit', split))
            for f in fs)
        assert images == [s + '_leftImg8bit.png' for s in expected]
        for stem in expected:
            img = Image.open(osp.join(path, 'leftImg8bit', split,
                                      stem + '_leftImg8bit.png'))
            assert (img.format, img.mode, img.size) == ('PNG', 'RGB',
                                                        (128, 64))
            gt = osp.join(path, 'gtFine', split, stem + '_gtFine_')
            with open(gt + 'polygons.json') as f:
                ann = json.load(f)
            assert (ann['imgHeight'], ann['imgWidth']) == (64, 128)
            # independent rasterisation of the polygons, back to front
            expected_ids = Image.new('L', (128, 64), 0)
            draw = ImageDraw.Draw(expected_ids)
            for obj in ann['objects']:
                assert set(obj) == {'label', 'polygon'}
                label_id = CITYSCAPES_IDS[obj['label']]
                if label_id >= 0:
                    draw.polygon([tuple(p) for p in obj['polygon']],
                                 fill=label_id)
            ids = np.asarray(Image.open(gt + 'labelIds.png'))
            np.testing.assert_array_equal(ids, np.asarray(expected_ids))
            train_ids = np.asarray(Image.open(gt + 'labelTrainIds.png'))
            lut = np.full(256, 255, dtype=np.uint8)
            for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
                lut[label_id] = train_id
            np.testing.assert_array_equal(train_ids, lut[ids])
            assert len(np.unique(train_ids)) >= 6


def test_cityscapes_without_train_ids(tmp_path):
    path = generate_cityscapes(str(tmp_path), num_train=1, num_val=1,
                               train_ids=False)
    files = tree(osp.join(path, 'gtFine'))
    assert sorted(files) == [
        'train/aachen/aachen_000000_000019_gtFine_labelIds.png',
        'train/aachen/aachen_000000_000019_gtFine_polygons.json',
        'val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png',
        'val/frankfurt/frankfurt_000000_000019_gtFine_polygons.json']


@pytest.mark.parametrize('generate', [generate_ade20k, generate_cityscapes,
                                      generate_scenes])
def test_deterministic_from_seed(tmp_path, generate):
    kwargs = dict(num_train=3, num_val=2)
    a = tree(generate(str(tmp_path / 'a'), seed=7, **kwargs))
    b = tree(generate(str(tmp_path / 'b'), seed=7, **kwargs))
    c = tree(generate(str(tmp_path / 'c'), seed=8, **kwargs))
    assert a == b
    assert sorted(a) == sorted(c)
    images = [k for k in a if k.endswith(('.jpg', '_leftImg8bit.png'))]
    assert len(images) == 5
    assert all(a[k] != c[k] for k in images)
    # image i of a split depends on the seed, the split and i only
    d = tree(generate(str(tmp_path / 'd'), seed=7, num_train=2, num_val=2))
    assert all(a[k] == v for k, v in d.items() if not k.endswith('.json'))


def test_scenes_written_by_two_processes_equal_one(tmp_path):
    # 260 training scenes: two shares (250 + 10) and the validation one, more
    # than one share in all, so both workers write
    serial = tree(generate_scenes(str(tmp_path / 'one'), num_train=260,
                                  num_val=3, seed=3, workers=1))
    parallel = tree(generate_scenes(str(tmp_path / 'two'), num_train=260,
                                    num_val=3, seed=3, workers=2))
    assert len(serial) == 2 * 263 + 1  # images, labels, the manifest
    assert serial == parallel
    with pytest.raises(ValueError, match='^workers must be >= 1, got 0$'):
        generate_scenes(str(tmp_path / 'none'), num_train=1, num_val=1,
                        workers=0)


def test_scenes_layout_labels_and_mmseg_dataset(tmp_path):
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    path = generate_scenes(str(tmp_path), num_train=24, num_val=4,
                           size=(48, 64), seed=0)
    assert path == str(tmp_path / 'synthetic_scenes')
    labels = []
    for i in range(24):
        img = Image.open(osp.join(path, 'images', 'training',
                                  f'scene_{i:06d}.jpg'))
        assert (img.format, img.mode, img.size) == ('JPEG', 'RGB', (64, 48))
        ann = Image.open(osp.join(path, 'annotations', 'training',
                                  f'scene_{i:06d}.png'))
        assert (ann.mode, ann.size) == ('L', (64, 48))
        labels.append(np.asarray(ann))
    counts = np.bincount(np.concatenate([x.ravel() for x in labels]),
                         minlength=8)
    # 0 = other, 1..6 the classes; every class occurs, nothing above 6
    assert counts[7:].sum() == 0
    assert (counts[:7] > 0).all()
    assert counts[0] < counts[1:].sum() / 10

    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dict(
            type='SyntheticScenesDataset', data_root=path,
            data_prefix=dict(img_path='images/validation',
                             seg_map_path='annotations/validation'),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations')]))
    assert len(dataset) == 4
    assert dataset.metainfo['classes'] == synthetic.SCENE_CLASSES
    assert len(dataset.metainfo['palette']) == 6
    sample = dataset[0]
    raw = np.asarray(Image.open(sample['seg_map_path']))
    expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    np.testing.assert_array_equal(sample['gt_seg_map'], expected)


def test_rerun_reuses_same_arguments_and_replaces_others(tmp_path):
    path = generate_ade20k(str(tmp_path), num_train=2, num_val=1)
    image = osp.join(path, 'images', 'training', 'ADE_train_00000001.jpg')
    stat = os.stat(image)
    assert generate_ade20k(str(tmp_path), num_train=2, num_val=1) == path
    assert os.stat(image).st_ino == stat.st_ino
    assert os.stat(image).st_mtime_ns == stat.st_mtime_ns

    generate_ade20k(str(tmp_path), num_train=3, num_val=1)
    assert len(os.listdir(osp.join(path, 'images', 'training'))) == 3
    assert os.stat(image).st_ino != stat.st_ino
    assert sorted(os.listdir(tmp_path)) == ['ADEChallengeData2016']

    # a dataset from another generator version is regenerated
    manifest_file = osp.join(path, synthetic.MANIFEST)
    with open(manifest_file) as f:
        manifest = json.load(f)
    assert manifest == {'kind': 'ade20k',
                        'version': synthetic.GENERATOR_VERSION,
                        'params': {'num_train': 3, 'num_val': 1,
                                   'size': [64, 64], 'seed': 0}}
    manifest['version'] = synthetic.GENERATOR_VERSION - 1
    with open(manifest_file, 'w') as f:
        json.dump(manifest, f)
    stat = os.stat(image)
    generate_ade20k(str(tmp_path), num_train=3, num_val=1)
    assert os.stat(image).st_ino != stat.st_ino
    with open(manifest_file) as f:
        assert json.load(f)['version'] == synthetic.GENERATOR_VERSION


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    real_sample = synthetic._ade20k_sample
    calls = []

    def failing_sample(*args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError('disk full')
        return real_sample(*args)

    monkeypatch.setattr(synthetic, '_ade20k_sample', failing_sample)
    with pytest.raises(OSError, match='disk full'):
        generate_ade20k(str(tmp_path), num_train=4, num_val=2)
    assert os.listdir(tmp_path) == []

    # an existing complete dataset survives a failed regeneration untouched
    monkeypatch.setattr(synthetic, '_ade20k_sample', real_sample)
    path = generate_ade20k(str(tmp_path), num_train=2, num_val=1)
    before = tree(path)
    calls.clear()
    monkeypatch.setattr(synthetic, '_ade20k_sample', failing_sample)
    with pytest.raises(OSError, match='disk full'):
        generate_ade20k(str(tmp_path), num_train=5, num_val=1)
    assert tree(path) == before
    assert os.listdir(tmp_path) == ['ADEChallengeData2016']


def test_foreign_folder_is_never_overwritten(tmp_path):
    dest = tmp_path / 'cityscapes'
    dest.mkdir()
    (dest / 'mine.txt').write_text('keep')
    with pytest.raises(SyntheticDatasetError) as e:
        generate_cityscapes(str(tmp_path))
    assert str(e.value) == (
        f'{dest} already exists and is not a synthetic cityscapes dataset '
        f'(no convseg_synthetic.json for it there); it is left untouched. '
        'Choose another root, or remove that folder if it is yours to remove.')
    assert sorted(os.listdir(dest)) == ['mine.txt']
    assert sorted(os.listdir(tmp_path)) == ['cityscapes']


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r'num_train and num_val must be '
                       r'>= 1, got 0 and 2'):
        generate_scenes(str(tmp_path), num_train=0, num_val=2)
    with pytest.raises(ValueError, match=r'size must be \(height, width\) '
                       r'with both >= 16, got \(8, 64\)'):
        generate_ade20k(str(tmp_path), size=(8, 64))
    assert os.listdir(tmp_path) == []


def test_scenes_take_more_than_colour_to_segment(tmp_path):
    """The best per-pixel colour classifier (a lookup table from quantised
    RGB to the most frequent class, fitted on the training split) stays far
    below the quickstart's 90% mIoU on the validation split."""
    path = generate_scenes(str(tmp_path), num_train=200, num_val=50)

    def load(folder):
        names = sorted(os.listdir(osp.join(path, 'images', folder)))
        images = np.stack([np.asarray(Image.open(
            osp.join(path, 'images', folder, n))) for n in names])
        labels = np.stack([np.asarray(Image.open(
            osp.join(path, 'annotations', folder, n[:-4] + '.png')))
            for n in names])
        bins = images.astype(np.int64) // 32
        return (bins[..., 0] * 64 + bins[..., 1] * 8 + bins[..., 2]).ravel(), \
            labels.ravel().astype(np.int64)

    colours, labels = load('training')
    keep = labels > 0
    counts = np.zeros((512, 7), dtype=np.int64)
    np.add.at(counts, (colours[keep], labels[keep]), 1)
    colours, labels = load('validation')
    keep = labels > 0
    pred, gt = counts.argmax(1)[colours[keep]], labels[keep]
    ious = [((pred == c) & (gt == c)).sum() / ((pred == c) | (gt == c)).sum()
            for c in range(1, 7)]
    assert np.mean(ious) < 0.4
