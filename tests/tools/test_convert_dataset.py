"""From a COCO export to a trained model with the generated config alone:
tools/convert_dataset.py, check_dataset, train, test --confusion-matrix,
the demo, and tools/dataset_stats.py with class weights."""
from __future__ import annotations

import csv
import json

import numpy as np
from mmengine.config import Config
from PIL import Image

CLASSES = ['water', 'sand']
COLOURS = np.array([[90, 90, 90], [30, 60, 200], [220, 200, 120]])


def _coco_export(root, count=6, size=64):
    """Images with a water rectangle and a sand triangle, as COCO JSON."""
    rng = np.random.default_rng(1)
    images, annotations = [], []
    for i in range(count):
        x, y = (int(v) for v in rng.integers(4, 24, 2))
        label = np.zeros((size, size), int)
        label[y:y + 30, x:x + 30] = 1
        yy, xx = np.mgrid[:size, :size] + 0.5
        label[(yy > 40) & (xx < yy - 40)] = 2  # triangle (0,40),(0,64),(24,64)
        pixels = COLOURS[label] + rng.integers(-15, 15, (size, size, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            root / f'photo_{i}.jpg', quality=95)
        images.append({'id': i + 1, 'file_name': f'photo_{i}.jpg',
                       'width': size, 'height': size})
        annotations += [
            {'id': 2 * i + 1, 'image_id': i + 1, 'category_id': 1,
             'segmentation': [[x, y, x + 30, y, x + 30, y + 30, x, y + 30]],
             'area': 900.0, 'bbox': [x, y, 30, 30], 'iscrowd': 0},
            {'id': 2 * i + 2, 'image_id': i + 1, 'category_id': 2,
             'segmentation': [[0, 40, 0, 64, 24, 64]], 'area': 288.0,
             'bbox': [0, 40, 24, 24], 'iscrowd': 0}]
    path = root / 'annotations.json'
    path.write_text(json.dumps({
        'images': images, 'annotations': annotations,
        'categories': [{'id': 1, 'name': 'water', 'supercategory': ''},
                       {'id': 2, 'name': 'sand', 'supercategory': ''}]}))
    return path


def test_coco_export_to_trained_model(tmp_path, run_script):
    export = tmp_path / 'export'
    export.mkdir()
    coco = _coco_export(export)
    out = tmp_path / 'dataset'
    convert = run_script('tools/convert_dataset.py', 'coco', coco, out,
                         '--images', export, '--val-fraction', '0.34',
                         '--seed', '3', '--workers', '2')
    assert convert.returncode == 0, convert.stderr[-3000:]
    assert 'train images: 4' in convert.stdout
    assert 'val images: 2' in convert.stdout
    assert 'labels written: 6' in convert.stdout
    config = out / 'config.py'
    cfg = Config.fromfile(str(config))
    assert cfg.classes == ('background', 'water', 'sand')
    assert cfg.crop_size == (64, 64) and cfg.img_suffix == '.jpg'
    assert cfg.model.decode_head.num_classes == 3

    check = run_script('tools/check_dataset.py', config)
    assert check.returncode == 0, check.stdout + check.stderr
    assert 'train: OK' in check.stdout.splitlines()

    loaders = ['train_dataloader', 'val_dataloader', 'test_dataloader']
    options = ['--cfg-options', 'model.backbone.init_cfg=None'] + [
        f'{loader}.{key}' for loader in loaders
        for key in ('num_workers=0', 'persistent_workers=False')]
    work = tmp_path / 'work'
    train = run_script(
        'tools/train.py', config, '--work-dir', work, *options,
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2', 'param_scheduler.0.end=1',
        'param_scheduler.1.end=2')
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = work / 'iter_2.pth'

    test = run_script('tools/test.py', config, checkpoint, '--work-dir',
                      work / 'test', '--confusion-matrix', tmp_path / 'cm',
                      *options)
    assert test.returncode == 0, test.stderr[-3000:]
    with open(tmp_path / 'cm' / 'iter_2_confusion.csv', newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == ['background', 'water', 'sand']
    matrix = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    # every labelled val pixel once; rows are the stored labels' counts
    val_labels = [np.asarray(Image.open(p)) for p in
                  sorted((out / 'ann_dir' / 'val').glob('*.png'))]
    np.testing.assert_array_equal(
        matrix.sum(1), np.bincount(np.concatenate(
            [v.ravel() for v in val_labels]), minlength=3)[:3])
    metrics = json.loads((work / 'test' / 'iter_2_metrics.json').read_text())
    accuracy = np.trace(matrix) / matrix.sum() * 100
    assert abs(metrics['aAcc'] - accuracy) < 0.01

    image = sorted((out / 'img_dir' / 'val').glob('*.jpg'))[0]
    demo = run_script('demo/image_demo.py', image, config, checkpoint,
                      '--device', 'cpu', '--out-dir', work / 'demo')
    assert demo.returncode == 0, demo.stderr[-3000:]
    mask = Image.open(work / 'demo' / f'{image.stem}_mask.png')
    assert mask.size == (64, 64) and np.asarray(mask).max() < 3

    weighted = tmp_path / 'weighted.py'
    stats = run_script('tools/dataset_stats.py', config, '--split', 'train',
                       '--out-dir', tmp_path / 'stats', '--class-weights',
                       'inverse', '--write', weighted)
    assert stats.returncode == 0, stats.stderr[-3000:]
    train_labels = np.concatenate([np.asarray(Image.open(p)).ravel() for p in
                                   (out / 'ann_dir' / 'train').glob('*.png')])
    counts = np.bincount(train_labels, minlength=3)[:3].astype(float)
    inverse = counts.sum() / counts
    expected = np.round(inverse / inverse.mean(), 4)
    written = Config.fromfile(str(weighted))
    np.testing.assert_allclose(
        written.model.decode_head.loss_decode.class_weight, expected,
        atol=1e-4)
    assert written.model.auxiliary_head.loss_decode.class_weight == \
        written.model.decode_head.loss_decode.class_weight
    result = json.loads((tmp_path / 'stats' / 'config_train_stats.json'
                         ).read_text())
    assert [r['images'] for r in result['classes']] == [4, 4, 4]
    assert result['height'] == {'min': 64, 'median': 64.0, 'max': 64}


def test_convert_dataset_options_and_errors(tmp_path, run_script):
    # colour masks with a JSON palette, no background class, a mask whose
    # image is missing skipped
    masks, photos = tmp_path / 'masks', tmp_path / 'photos'
    masks.mkdir()
    photos.mkdir()
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4] = (200, 0, 0)
    rgb[6:] = (0, 200, 0)
    for name in ('a', 'b', 'c'):
        Image.fromarray(rgb).save(masks / f'{name}.png')
    for name in ('a', 'b'):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(
            photos / f'{name}.png')
    palette = tmp_path / 'palette.json'
    palette.write_text(json.dumps({'background': [0, 0, 0],
                                   'brick': [200, 0, 0],
                                   'moss': [0, 200, 0]}))
    out = tmp_path / 'from_masks'
    run = run_script('tools/convert_dataset.py', 'mask', masks, out,
                     '--palette', palette, '--images', photos,
                     '--no-background', '--skip-missing', '--workers', '1')
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'masks without an image (skipped): 1' in run.stdout
    label = np.asarray(Image.open(next((out / 'ann_dir').rglob('a.png'))))
    expected = np.full((8, 8), 255)
    expected[:4], expected[6:] = 0, 1
    np.testing.assert_array_equal(label, expected)
    assert json.loads((out / 'classes.json').read_text())['classes'] == [
        'brick', 'moss']

    # LabelMe with a class list, an unknown label skipped, a 3-wide line
    folder = tmp_path / 'labelme'
    folder.mkdir()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / 'f.png')
    shapes = [{'label': 'wire', 'points': [[0, 5], [10, 5]],
               'shape_type': 'line', 'group_id': None, 'flags': {}},
              {'label': 'bird', 'points': [[2, 2]], 'shape_type': 'point',
               'group_id': None, 'flags': {}},
              {'label': 'cloud', 'points': [[0, 0], [3, 0], [3, 3]],
               'shape_type': 'polygon', 'group_id': None, 'flags': {}}]
    (folder / 'f.json').write_text(json.dumps({
        'version': '5.4.1', 'flags': {}, 'shapes': shapes,
        'imagePath': 'f.png', 'imageData': None, 'imageHeight': 10,
        'imageWidth': 10}))
    (tmp_path / 'labels.txt').write_text('__ignore__\n_background_\nwire\n'
                                         'bird\n')
    out = tmp_path / 'from_labelme'
    run = run_script('tools/convert_dataset.py', 'labelme', folder, out,
                     '--classes', tmp_path / 'labels.txt', '--skip-unknown',
                     '--line-width', '3', '--point-radius', '1',
                     '--val-fraction', '0')
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'shapes of unknown labels (skipped): 1' in run.stdout
    label = np.asarray(Image.open(out / 'ann_dir' / 'train' / 'f.png'))
    assert (label == 1).sum() == 40    # rows 3..6: centres within 1.5 of y=5
    assert (label == 2).sum() == 4           # the bird: centres within 1

    # COCO: an unknown category id stops with one line, nothing written
    export = tmp_path / 'coco'
    export.mkdir()
    coco = _coco_export(export, count=1)
    doc = json.loads(coco.read_text())
    doc['annotations'][0]['category_id'] = 9
    coco.write_text(json.dumps(doc))
    out = tmp_path / 'from_coco'
    run = run_script('tools/convert_dataset.py', 'coco', coco, out,
                     '--crowd-as-class')
    assert run.returncode == 1
    assert run.stderr.strip() == (
        f'error: {coco}: annotation id 1 has category id 9, which '
        '"categories" does not list (known: [1, 2]); fix the export or pass '
        '--skip-unknown')
    assert not out.exists()
