"""Dataset statistics and class weights against numpy computations on a
dataset written by the COCO converter."""
from __future__ import annotations

import json

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from convseg.datasets.converters import convert
from convseg.datasets.stats import (DatasetStatsError, class_weights,
                                    dataset_stats)


@pytest.fixture
def converted(tmp_path):
    rng = np.random.default_rng(5)
    images, annotations = [], []
    sizes = [(20, 30), (24, 24), (16, 40), (32, 20)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            tmp_path / f'i{i}.png')
        images.append({'id': i, 'file_name': f'i{i}.png', 'width': w,
                       'height': h})
        for k in range(1 + i % 2):
            x, y = rng.integers(0, 10, 2).tolist()
            annotations.append({
                'id': len(annotations), 'image_id': i, 'iscrowd': 0,
                'category_id': 1 + (i + k) % 3, 'area': 0, 'bbox': [],
                'segmentation': [[x, y, x + 9, y, x + 9, y + 7, x, y + 7]]})
    path = tmp_path / 'coco.json'
    path.write_text(json.dumps({'images': images, 'annotations': annotations,
                                'categories': [{'id': c, 'name': f'c{c}'}
                                               for c in (1, 2, 3, 4)]}))
    out = tmp_path / 'out'
    convert('coco', [str(path)], str(out), val_fraction=0, workers=1)
    return out


def test_stats_and_weights_match_numpy(converted):
    cfg = Config.fromfile(str(converted / 'config.py'))
    stats = dataset_stats(cfg, 'train')
    labels = [np.asarray(Image.open(p)) for p in
              sorted((converted / 'ann_dir' / 'train').glob('*.png'))]
    rgbs = [np.asarray(Image.open(p)).reshape(-1, 3).astype(float) for p in
            sorted((converted / 'img_dir' / 'train').glob('*.png'))]
    n = 5
    counts = np.stack([np.bincount(lab.ravel(), minlength=n)[:n]
                       for lab in labels])
    pixels = counts.sum(0)
    assert [r['pixels'] for r in stats['classes']] == pixels.tolist()
    assert [r['images'] for r in stats['classes']] == \
        (counts > 0).sum(0).tolist()
    assert pixels[4] == 0 and stats['ignored_share'] == 0
    allpix = np.concatenate(rgbs)
    np.testing.assert_allclose(stats['mean_rgb'], allpix.mean(0), atol=1e-3)
    np.testing.assert_allclose(stats['std_rgb'], allpix.std(0), atol=1e-3)
    assert stats['height'] == {'min': 16, 'median': 22.0, 'max': 32}
    assert stats['config_mean'] == [123.675, 116.28, 103.53]

    present = pixels > 0
    share = pixels[present] / pixels.sum()
    for name, raw in (('inverse', 1 / share),
                      ('inverse-sqrt', 1 / np.sqrt(share))):
        expected = np.zeros(n)
        expected[present] = raw / raw.mean()
        np.testing.assert_allclose(class_weights(stats, name), expected,
                                   atol=1e-4)
    sizes = np.array([lab.size for lab in labels])
    freq = pixels[present] / ((counts > 0) * sizes[:, None]).sum(0)[present]
    expected = np.zeros(n)
    expected[present] = np.median(freq) / freq
    np.testing.assert_allclose(class_weights(stats, 'median-frequency'),
                               expected, atol=1e-4)
    with pytest.raises(DatasetStatsError, match="unknown class weighting "
                       "'log'; use one of inverse, inverse-sqrt, "
                       "median-frequency"):
        class_weights(stats, 'log')
