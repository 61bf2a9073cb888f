"""Converters of labelling-tool exports, against references they do not use:
hand-drawn integer rectangles, hand-written RLE, and matplotlib's
point-in-polygon test at pixel centres."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from PIL import Image

from convseg.datasets.converters import (ConversionError, convert,
                                         polygon_mask, read_export)
from convseg.datasets.converters.raster import coco_rle_counts, decode_runs


def _full(points, h, w):
    mask, (top, left) = polygon_mask(np.asarray(points, float), h, w)
    out = np.zeros((h, w), bool)
    out[top:top + mask.shape[0], left:left + mask.shape[1]] = mask
    return out


def test_integer_rectangle_covers_exactly_its_pixels():
    got = _full([[2, 1], [7, 1], [7, 4], [2, 4]], 6, 9)
    expected = np.zeros((6, 9), bool)
    expected[1:4, 2:7] = True
    np.testing.assert_array_equal(got, expected)


def test_polygon_matches_point_in_polygon_away_from_the_border():
    rng = np.random.default_rng(3)
    h, w = 40, 50
    for _ in range(5):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radius = rng.uniform(5, 25, 9)
        pts = np.stack([25 + radius * np.cos(angles),
                        20 + radius * np.sin(angles)], 1)
        got = _full(pts, h, w)
        yy, xx = np.mgrid[:h, :w] + 0.5
        centres = np.stack([xx.ravel(), yy.ravel()], 1)
        ref = MplPath(pts).contains_points(centres).reshape(h, w)
        # distance of each centre to the polygon's edges
        a, b = pts, np.roll(pts, -1, 0)
        d = b - a
        t = np.clip(((centres[:, None] - a) * d).sum(-1) / (d * d).sum(-1),
                    0, 1)
        dist = np.linalg.norm(centres[:, None] - a - t[..., None] * d,
                              axis=-1).min(1).reshape(h, w)
        differ = got != ref
        assert got.sum() > 100
        assert not (differ & (dist > 1e-6)).any()


def _encode(mask):
    """COCO's compressed RLE string of a mask: written here independently."""
    flat = mask.T.ravel().astype(np.uint8)
    runs, value, count = [], 0, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    out = ''
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1f
            x >>= 5
            more = (x != -1) if c & 0x10 else (x != 0)
            if more:
                c |= 0x20
            out += chr(c + 48)
    return out


def test_rle_hand_written_and_compressed():
    # 3 x 4 column by column: column 0 empty, column 1 rows 1-2, 2-3 full
    expected = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]], bool)
    np.testing.assert_array_equal(
        decode_runs([4, 8], 3, 4, column_major=True), expected)
    # CVAT's runs go row by row: 2 zeros, 2 ones, 8 zeros
    np.testing.assert_array_equal(
        decode_runs([2, 2, 8], 3, 4, column_major=False),
        np.array([[0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], bool))
    rng = np.random.default_rng(0)
    big = rng.random((37, 23)) > 0.6
    runs = coco_rle_counts(_encode(big))
    np.testing.assert_array_equal(decode_runs(runs, 37, 23, True), big)
    with pytest.raises(ValueError, match='add up to 11 pixels'):
        decode_runs([4, 2, 5], 3, 4, column_major=True)


def _image(path, h, w, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _label(root, split, name):
    return np.asarray(Image.open(root / 'ann_dir' / split / f'{name}.png'))


def _coco(tmp_path, annotations, images=None):
    images = images or [{'id': 1, 'file_name': 'a.png', 'width': 12,
                         'height': 10}]
    for img in images:
        _image(tmp_path / img['file_name'], img['height'], img['width'])
    doc = {'info': {}, 'licenses': [], 'images': images,
           'annotations': annotations,
           'categories': [{'id': 3, 'name': 'cat', 'supercategory': 'a'},
                          {'id': 7, 'name': 'dog', 'supercategory': 'a'}]}
    path = tmp_path / 'instances.json'
    path.write_text(json.dumps(doc))
    return path


def _ann(i, cat, seg, crowd=0):
    return {'id': i, 'image_id': 1, 'category_id': cat, 'segmentation': seg,
            'area': 0, 'bbox': [0, 0, 0, 0], 'iscrowd': crowd}


def test_coco_polygons_rle_crowd_and_smaller_on_top(tmp_path):
    crowd = np.zeros((10, 12), bool)
    crowd[8:, :3] = True
    runs = [int(v) for v in np.diff(np.flatnonzero(np.diff(np.concatenate(
        [[0], crowd.T.ravel().astype(int), [2]])) != 0), prepend=0)]
    path = _coco(tmp_path, [
        _ann(1, 7, [[1, 1, 9, 1, 9, 7, 1, 7]]),         # large dog, first
        _ann(2, 3, [[2, 2, 4, 2, 4, 4, 2, 4]]),         # small cat on it
        _ann(3, 3, [[10, 0, 14, 0, 14, 3, 10, 3]]),     # clipped at x = 12
        _ann(4, 7, {'size': [10, 12], 'counts': runs}, crowd=1)])
    out = tmp_path / 'out'
    summary = convert('coco', [str(path)], str(out), val_fraction=0,
                      workers=1)
    label = _label(out, 'train', 'a')
    expected = np.zeros((10, 12), np.uint8)
    expected[1:7, 1:9] = 2
    expected[2:4, 2:4] = 1
    expected[0:3, 10:12] = 1
    expected[crowd] = 255
    np.testing.assert_array_equal(label, expected)
    assert summary['shapes clipped to the image'] == 1
    assert summary['crowd regions (ignored)'] == 1
    classes = json.loads((out / 'classes.json').read_text())
    assert classes['classes'] == ['background', 'cat', 'dog']
    # a rerun skips the finished label; a changed export replaces it
    again = convert('coco', [str(path)], str(out), val_fraction=0, workers=1)
    assert again['labels written'] == 0 and again['images copied'] == 0
    doc = json.loads(path.read_text())
    doc['annotations'] = doc['annotations'][:1]
    path.write_text(json.dumps(doc))
    assert convert('coco', [str(path)], str(out), val_fraction=0,
                   workers=1)['labels written'] == 1
    assert (_label(out, 'train', 'a') == 2).sum() == 48


def test_coco_bad_input_is_named_and_nothing_half_written(tmp_path):
    path = _coco(tmp_path, [_ann(1, 5, [[1, 1, 5, 1, 5, 5]])])
    out = tmp_path / 'out'
    with pytest.raises(ConversionError,
                       match=r'annotation id 1 has category id 5, which '
                       r'"categories" does not list \(known: \[3, 7\]\); '
                       'fix the export or pass --skip-unknown'):
        convert('coco', [str(path)], str(out), workers=1)
    assert not out.exists()
    summary = convert('coco', [str(path)], str(out), val_fraction=0,
                      workers=1, skip_unknown=True)
    assert summary['annotations of unknown categories (skipped)'] == 1
    path.write_text(path.read_text()[:-40])
    with pytest.raises(ConversionError, match=r'instances.json: malformed '
                       r'JSON at line 1, column \d+'):
        read_export('coco', [str(path)])
    images = [{'id': 1, 'file_name': 'a.png', 'width': 12, 'height': 10},
              {'id': 2, 'file_name': 'b.png', 'width': 8, 'height': 10}]
    path = _coco(tmp_path, [], images)
    _image(tmp_path / 'b.png', 10, 9)
    with pytest.raises(ConversionError, match=r'b.png: the image is 9 x 10 '
                       r'\(W x H\) but .*instances.json \(image id 2\) '
                       'declares 8 x 10'):
        read_export('coco', [str(path)])
    os.remove(tmp_path / 'b.png')
    with pytest.raises(ConversionError, match='image id 2 names b.png, '
                       'which is not in'):
        read_export('coco', [str(path)])
    assert len(read_export('coco', [str(path)], skip_missing=True).samples
               ) == 1
    (tmp_path / 'sub').mkdir()
    _image(tmp_path / 'sub' / 'a.png', 10, 12)
    images[1] = {'id': 2, 'file_name': 'sub/a.png', 'width': 12,
                 'height': 10}
    path = _coco(tmp_path, [], images)
    with pytest.raises(ConversionError, match="two images would both be "
                       "written as 'a'"):
        convert('coco', [str(path)], str(tmp_path / 'out2'), workers=1)
    assert not (tmp_path / 'out2' / 'ann_dir').exists()


def test_labelme_shapes_and_file_order(tmp_path):
    folder = tmp_path / 'lm'
    _image(folder / 'x.jpg', 20, 30)
    shapes = [
        {'label': 'road', 'points': [[0, 0], [30, 0], [30, 20], [0, 20]],
         'group_id': None, 'description': '', 'shape_type': 'polygon',
         'flags': {}, 'mask': None},
        {'label': 'car', 'points': [[12, 4], [5, 2]], 'group_id': None,
         'description': '', 'shape_type': 'rectangle', 'flags': {},
         'mask': None},
        {'label': 'sign', 'points': [[20, 10], [23, 10]], 'group_id': None,
         'description': '', 'shape_type': 'circle', 'flags': {},
         'mask': None},
        {'label': 'sign', 'points': [[2, 15], [28, 15]], 'group_id': None,
         'description': '', 'shape_type': 'line', 'flags': {}, 'mask': None},
        {'label': 'car', 'points': [[26, 3]], 'group_id': None,
         'description': '', 'shape_type': 'point', 'flags': {},
         'mask': None}]
    (folder / 'x.json').write_text(json.dumps({
        'version': '5.4.1', 'flags': {}, 'shapes': shapes,
        'imagePath': 'x.jpg', 'imageData': None, 'imageHeight': 20,
        'imageWidth': 30}))
    out = tmp_path / 'out'
    convert('labelme', [str(folder)], str(out), val_fraction=0, workers=1,
            line_width=4, point_radius=2)
    label = _label(out, 'train', 'x').astype(int)
    yy, xx = np.mgrid[:20, :30] + 0.5
    expected = np.full((20, 30), 2)                        # road
    expected[2:4, 5:12] = 1                                # car rectangle
    expected[(xx - 20) ** 2 + (yy - 10) ** 2 <= 9] = 3     # sign circle
    expected[(abs(yy - 15) <= 2) & (xx >= 2) & (xx <= 28)] = 3
    expected[(np.hypot(xx - 2, yy - 15) <= 2) |
             (np.hypot(xx - 28, yy - 15) <= 2)] = 3        # round caps
    expected[(xx - 26) ** 2 + (yy - 3) ** 2 <= 4] = 1      # car point
    np.testing.assert_array_equal(label, expected)
    assert json.loads((out / 'classes.json').read_text())['classes'] == [
        'background', 'car', 'road', 'sign']


CVAT_XML = '''<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>1</id>
      <name>t</name>
      <size>2</size>
      <mode>annotation</mode>
      <labels>
        <label><name>grass</name><color>#33dd33</color><type>any</type>
          <attributes></attributes></label>
        <label><name>rock</name><color>#808080</color><type>any</type>
          <attributes></attributes></label>
      </labels>
    </task>
  </meta>
  <image id="0" name="p.png" subset="Train" width="16" height="12">
    <box label="rock" source="manual" occluded="0" xtl="2" ytl="2" xbr="8"
      ybr="6" z_order="1"></box>
    <polygon label="grass" source="manual" occluded="0"
      points="0,0;16,0;16,12;0,12" z_order="0"></polygon>
    <mask label="grass" source="manual" occluded="0" rle="1, 2, 1"
      left="3" top="3" width="2" height="2" z_order="2"></mask>
    <polyline label="rock" source="manual" occluded="0"
      points="10,9;15,9" z_order="0"></polyline>
  </image>
  <image id="1" name="q.png" subset="Validation" width="16" height="12">
  </image>
</annotations>
'''


def test_cvat_xml_z_order_boxes_masks_and_subsets(tmp_path):
    _image(tmp_path / 'images' / 'p.png', 12, 16)
    _image(tmp_path / 'images' / 'q.png', 12, 16)
    (tmp_path / 'annotations.xml').write_text(CVAT_XML)
    out = tmp_path / 'out'
    convert('cvat', [str(tmp_path / 'annotations.xml')], str(out),
            workers=1, line_width=2)
    expected = np.full((12, 16), 1, np.uint8)
    # polyline 2 wide (centres within 1 of it: its round caps reach columns
    # 9 and 15), drawn after the polygon of the same z_order
    expected[8:10, 9:16] = 2
    expected[2:6, 2:8] = 2        # box, z_order 1
    expected[3, 4] = expected[4, 3] = 1   # mask 0 1 / 1 0, z_order 2
    np.testing.assert_array_equal(_label(out, 'train', 'p'), expected)
    assert (_label(out, 'val', 'q') == 0).all()
    classes = json.loads((out / 'classes.json').read_text())
    assert classes['palette'][1:] == [[0x33, 0xdd, 0x33], [128, 128, 128]]
    (tmp_path / 'bad.xml').write_text(CVAT_XML[:300])
    with pytest.raises(ConversionError, match=r'bad.xml: malformed XML at '
                       r'line \d+, column \d+'):
        read_export('cvat', [str(tmp_path / 'bad.xml')])


def test_cvat_segmentation_mask_export(tmp_path):
    root = tmp_path / 'export'
    _image(root / 'JPEGImages' / 'm.jpg', 4, 5)
    (root / 'labelmap.txt').write_text(
        '# label:color_rgb:parts:actions\nbackground:0,0,0::\n'
        'tree:0,128,0::\nsky:0,0,255::\n')
    (root / 'SegmentationClass').mkdir()
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[0] = (0, 0, 255)
    rgb[3, 1:] = (0, 128, 0)
    Image.fromarray(rgb).save(root / 'SegmentationClass' / 'm.png')
    (root / 'ImageSets' / 'Segmentation').mkdir(parents=True)
    (root / 'ImageSets' / 'Segmentation' / 'val.txt').write_text('m\n')
    out = tmp_path / 'out'
    convert('cvat', [str(root)], str(out), workers=1)
    expected = np.zeros((4, 5), np.uint8)
    expected[0] = 2
    expected[3, 1:] = 1
    np.testing.assert_array_equal(_label(out, 'val', 'm'), expected)
    rgb[1, 1] = (9, 9, 9)
    Image.fromarray(rgb).save(root / 'SegmentationClass' / 'm.png')
    with pytest.raises(ConversionError, match=r'm.png: colours not in the '
                       r'palette: \(9, 9, 9\): 1 px'):
        convert('cvat', [str(root)], str(out), workers=1)
    # the earlier label is intact
    np.testing.assert_array_equal(_label(out, 'val', 'm'), expected)
