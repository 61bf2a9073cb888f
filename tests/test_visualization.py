"""Overlay blend, legend entries and strip, palettes and palette PNGs."""
import cv2
import numpy as np
import pytest
from PIL import Image

import convseg  # noqa: F401
from convseg.visualization import (LegendEntry, get_palette, legend_entries,
                                   mask_image, overlay, random_palette)

CLASSES = ('road', 'tree', 'sky', 'car', 'person')
PALETTE = [(200, 30, 40), (20, 190, 60), (30, 60, 210), (240, 200, 10),
           (160, 20, 200)]


def _scene(height, width, seed=0):
    """A random RGB image and a label map with every class, 255 and strays."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    labels = np.zeros((height, width), np.int64)
    labels[:, width // 5:] = 1
    labels[:, 2 * width // 5:] = 2
    labels[height // 2:, 3 * width // 5:] = 3
    labels[:height // 4, :width // 10] = 4
    labels[height - 3:, :] = 255       # ignore_index: not labelled
    labels[0, width - 4:] = 7          # not a class id: not labelled
    labels[1, width - 4:] = -1         # negative: not labelled
    return image, labels


def _expected_blend(image, labels, opacity):
    """The blend formula evaluated independently in float64."""
    expected = image.astype(np.float64).copy()
    valid = (labels >= 0) & (labels < len(CLASSES)) & (labels != 255)
    colors = np.array(PALETTE, np.float64)
    expected[valid] = ((1 - opacity) * image[valid]
                       + opacity * colors[labels[valid]])
    return expected, valid


@pytest.mark.parametrize('opacity', [0.5, 0.3, 1.0, 0.0])
def test_blend_formula_on_labelled_pixels_and_input_elsewhere(opacity):
    image, labels = _scene(40, 60)
    out = overlay(image, labels, PALETTE, CLASSES, opacity=opacity,
                  legend=False)
    expected, valid = _expected_blend(image, labels, opacity)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(np.float64) - expected).max() <= 0.5 + 1e-4
    np.testing.assert_array_equal(out[~valid], image[~valid])
    assert (~valid).sum() == 3 * 60 + 8


def test_legend_entries_exact_counts_and_order():
    labels = np.full((10, 10), 255, np.int64)
    labels[:4] = 2          # 40 px
    labels[4:6] = 0         # 20 px
    labels[6, :5] = 4       # 5 px
    labels[6, 5:] = 1       # 5 px (ties with class 4: lower id first)
    labels[7, :3] = 9       # not a class: not listed
    entries = legend_entries(labels, CLASSES, PALETTE)
    assert entries == [
        LegendEntry(2, 'sky', PALETTE[2], 40, 0.40),
        LegendEntry(0, 'road', PALETTE[0], 20, 0.20),
        LegendEntry(1, 'tree', PALETTE[1], 5, 0.05),
        LegendEntry(4, 'person', PALETTE[4], 5, 0.05),
    ]
    assert legend_entries(np.full((3, 3), 255), CLASSES, PALETTE) == []


def _swatch_colours(picture, palette=PALETTE):
    """Palette colours filling a solid 5x5 block (a swatch) of ``picture``."""
    kernel = np.ones((5, 5), np.uint8)
    return {tuple(color) for color in palette
            if cv2.erode(np.all(picture == color, axis=-1).astype(np.uint8),
                         kernel).any()}


@pytest.mark.parametrize('shape,side', [((40, 600), 'below'),
                                        ((600, 40), 'right'),
                                        ((50, 80), None),
                                        ((120, 60), None)])
def test_legend_strip_appended_beside_or_below_image_unchanged(shape, side):
    image, labels = _scene(*shape)
    labels[labels == 3] = 1  # class 3 (car) absent
    plain = overlay(image, labels, PALETTE, CLASSES, legend=False)
    out, entries = overlay(image, labels, PALETTE, CLASSES,
                           return_legend=True)
    height, width = shape
    np.testing.assert_array_equal(out[:height, :width], plain)
    below = out.shape[0] > height and out[height:, :width].min() < 255
    right = out.shape[1] > width and out[:height, width:].min() < 255
    assert below != right  # one strip, on one side
    if side is not None:
        assert below == (side == 'below')
    outside = out.copy()
    outside[:height, :width] = 255
    if below:
        assert (out[:height, width:] == 255).all()
    else:
        assert (out[height:, :width] == 255).all()
    present = {PALETTE[i] for i in (0, 1, 2, 4)}
    assert [e.class_id for e in entries] == \
        [e.class_id for e in legend_entries(labels, CLASSES, PALETTE)]
    assert {e.color for e in entries} == present
    assert _swatch_colours(outside) == present


def test_legend_lists_forty_classes_of_a_narrow_image():
    classes = [f'class {i}' for i in range(40)]
    palette = random_palette(40)
    labels = np.repeat(np.arange(40), 10).reshape(400, 1).repeat(30, axis=1)
    image = np.zeros((400, 30, 3), np.uint8)
    out = overlay(image, labels, palette, classes)
    np.testing.assert_array_equal(
        out[:400, :30], overlay(image, labels, palette, classes, legend=False))
    outside = out.copy()
    outside[:400, :30] = 255
    assert _swatch_colours(outside, palette) == set(palette)


def test_with_labels_writes_names_inside_large_regions_only():
    image = np.full((120, 200, 3), 128, np.uint8)
    labels = np.zeros((120, 200), np.int64)
    labels[:, 100:] = 2
    labels[0:2, 0:2] = 4  # too small to hold a name
    plain = overlay(image, labels, PALETTE, CLASSES, legend=False)
    named = overlay(image, labels, PALETTE, CLASSES, legend=False,
                    with_labels=True)
    changed = np.any(named != plain, axis=-1)
    assert changed[:, :100].any() and changed[:, 100:].any()
    light = np.all(named >= 230, axis=-1)  # the text
    dark = np.all(named <= 25, axis=-1)    # its outline
    assert light.sum() > 20 and dark.sum() > 20
    assert not changed[:6, :6].any()


def test_random_palette_deterministic_and_distinct():
    first = random_palette(150)
    assert first == random_palette(150)
    assert first != random_palette(150, seed=1)
    assert len(set(first)) == 150
    colors = np.array(first[:12], np.float64)
    gaps = np.linalg.norm(colors[:, None] - colors[None], axis=-1)
    assert gaps[np.triu_indices(12, 1)].min() > 30


def test_named_palettes():
    from mmseg.datasets import ADE20KDataset, CityscapesDataset
    ade = get_palette('ade20k', 150)
    assert ade == [tuple(c) for c in ADE20KDataset.METAINFO['palette']]
    city = get_palette('cityscapes', 25)
    assert city[:19] == [
        tuple(c) for c in CityscapesDataset.METAINFO['palette']]
    assert city[19:] == random_palette(25)[19:]
    with pytest.raises(ValueError, match="unknown palette 'pascal'"):
        get_palette('pascal', 3)


def test_mask_png_reads_back_as_class_ids(tmp_path):
    labels = np.random.default_rng(0).integers(0, 5, (17, 23))
    mask_image(labels, PALETTE).save(tmp_path / 'mask.png')
    with Image.open(tmp_path / 'mask.png') as read:
        assert read.mode == 'P'
        np.testing.assert_array_equal(np.asarray(read), labels)
        assert read.getpalette()[:15] == [c for rgb in PALETTE for c in rgb]
    with pytest.raises(ValueError, match='label map has values 0..300'):
        mask_image(np.array([[0, 300]]), PALETTE)


def test_bad_arguments():
    image, labels = _scene(8, 8)
    with pytest.raises(ValueError, match='opacity must be in'):
        overlay(image, labels, PALETTE, CLASSES, opacity=1.5)
    with pytest.raises(ValueError, match=r'label_map shape \(8, 7\) differs'):
        overlay(image, labels[:, :7], PALETTE, CLASSES)
    with pytest.raises(ValueError, match='the palette has 2 colours for 5'):
        overlay(image, labels, PALETTE[:2], CLASSES)
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8 RGB'):
        overlay(image.astype(np.float32), labels, PALETTE, CLASSES)
