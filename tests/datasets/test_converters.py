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

from convseg.datasets.converters import (ConversionError, Shape, convert,
                                         paint, polygon_mask, read_export)
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
