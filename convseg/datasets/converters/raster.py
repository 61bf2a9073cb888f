"""Shapes to label pixels: one rasterising convention for every format.

A pixel ``(row, col)`` is the unit square ``[col, col + 1) x [row, row + 1)``
of image coordinates (COCO's, LabelMe's and CVAT's convention for vertices),
and a shape covers a pixel when it contains the pixel's centre
``(col + 0.5, row + 0.5)``. Polygons are filled by the even-odd rule, a
centre exactly on a left or top edge counts as inside and one on a right or
bottom edge as outside, so an integer rectangle ``x0..x1, y0..y1`` covers
exactly ``(x1 - x0) * (y1 - y0)`` pixels. Lines, points and circles cover the
centres within their radius (the half width of a line).

Run-length masks are decoded here too: COCO's (column-major, compressed
string or plain counts) and CVAT's (row-major counts over a box).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ConvsegError

#: the label of ignored pixels
IGNORE = 255


class ShapeError(ConvsegError, ValueError):
    """Raised for a shape or mask whose geometry cannot be drawn."""


@dataclass
class Shape:
    """One annotated region: what it is, where, and its stacking order.

    ``kind`` is ``polygon`` (``points`` N x 2 of x, y), ``circle``
    (``points`` = centre, ``radius``), ``line`` (a polyline, ``radius`` =
    half its width), ``point`` (``points`` 1 x 2, ``radius``) or ``mask``
    (``mask`` a bool array placed at ``points`` = [[left, top]]). Shapes are
    painted by increasing ``order``, later ones on top.
    """

    label: int
    kind: str
    points: np.ndarray
    order: float = 0.0
    radius: float = 0.0
    mask: np.ndarray | None = None


def _centres(lo: float, hi: float, limit: int) -> tuple[int, int]:
    """Indices of the pixels whose centres may lie in [lo, hi]."""
    start = max(int(np.floor(lo - 0.5)), 0)
    stop = min(int(np.ceil(hi + 0.5)), limit)
    return start, max(stop, start)


def polygon_mask(points: np.ndarray, height: int,
                 width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The pixels of ``height`` x ``width`` whose centres a polygon covers.

    Returns the mask of the polygon's bounding box (clipped to the image) and
    the box's (top, left) corner, so large images with small shapes stay
    cheap.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        raise ShapeError(f'a polygon needs 3 or more points, got {len(pts)}')
    x0, x1 = _centres(pts[:, 0].min(), pts[:, 0].max(), width)
    y0, y1 = _centres(pts[:, 1].min(), pts[:, 1].max(), height)
    box_w = x1 - x0
    if box_w == 0 or y1 == y0:
        return np.zeros((max(y1 - y0, 0), box_w), bool), (y0, x0)
    ys = np.arange(y0, y1) + 0.5
    a, b = pts, np.roll(pts, -1, axis=0)
    # edges that a row centre y crosses: one end at or below y, the other
    # above (half-open, so a vertex on the row is counted once)
    lo = np.minimum(a[:, 1], b[:, 1])
    hi = np.maximum(a[:, 1], b[:, 1])
    crosses = (lo[None, :] <= ys[:, None]) & (ys[:, None] < hi[None, :])
    rows, edges = np.nonzero(crosses)
    ea, eb = a[edges], b[edges]
    t = (ys[rows] - ea[:, 1]) / (eb[:, 1] - ea[:, 1])
    xs = ea[:, 0] + t * (eb[:, 0] - ea[:, 0])
    # first pixel column whose centre is at or right of the crossing
    cols = np.clip(np.ceil(xs - 0.5).astype(np.int64) - x0, 0, box_w)
    toggles = np.zeros((y1 - y0, box_w + 1), np.int32)
    np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles[:, :box_w], axis=1) & 1).astype(bool), (y0, x0)


def _disc_segments(points: np.ndarray, radius: float, height: int,
                   width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pixels whose centres lie within ``radius`` of a polyline (or point)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x0, x1 = _centres(pts[:, 0].min() - radius, pts[:, 0].max() + radius,
                      width)
    y0, y1 = _centres(pts[:, 1].min() - radius, pts[:, 1].max() + radius,
                      height)
    cx = np.arange(x0, x1)[None, :] + 0.5
    cy = np.arange(y0, y1)[:, None] + 0.5
    near = np.zeros((y1 - y0, x1 - x0), bool)
    segments = zip(pts, pts[1:]) if len(pts) > 1 else [(pts[0], pts[0])]
    for (ax, ay), (bx, by) in segments:
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else np.clip(
            ((cx - ax) * dx + (cy - ay) * dy) / length2, 0.0, 1.0)
        near |= (cx - ax - t * dx) ** 2 + (cy - ay - t * dy) ** 2 <= \
            radius * radius
    return near, (y0, x0)


def shape_mask(shape: Shape, height: int,
               width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A shape's covered pixels: (box mask, (top, left)) in the image."""
    if shape.kind == 'polygon':
        return polygon_mask(shape.points, height, width)
    if shape.kind in ('line', 'point', 'circle'):
        return _disc_segments(shape.points, shape.radius, height, width)
    if shape.kind == 'mask':
        left, top = (int(v) for v in np.asarray(shape.points).reshape(2))
        mask = shape.mask
        y0, x0 = max(top, 0), max(left, 0)
        y1 = min(top + mask.shape[0], height)
        x1 = min(left + mask.shape[1], width)
        return (mask[y0 - top:max(y1, y0) - top, x0 - left:max(x1, x0) - left],
                (y0, x0))
    raise ShapeError(f'unknown shape kind {shape.kind!r}')


def outside(shape: Shape, height: int, width: int) -> bool:
    """Whether a shape reaches outside the image (and is clipped)."""
    if shape.kind == 'mask':
        left, top = np.asarray(shape.points).reshape(2)
        return bool(left < 0 or top < 0 or left + shape.mask.shape[1] > width
                    or top + shape.mask.shape[0] > height)
    pts = np.asarray(shape.points, dtype=np.float64).reshape(-1, 2)
    r = shape.radius
    return bool((pts[:, 0] - r < 0).any() or (pts[:, 1] - r < 0).any() or
                (pts[:, 0] + r > width).any() or
                (pts[:, 1] + r > height).any())


def paint(shapes: Sequence[Shape], height: int, width: int,
          fill: int) -> np.ndarray:
    """The shapes painted by ``order`` (stable sort) over ``fill``."""
    label = np.full((height, width), fill, np.uint8)
    for shape in sorted(shapes, key=lambda s: s.order):
        mask, (top, left) = shape_mask(shape, height, width)
        region = label[top:top + mask.shape[0], left:left + mask.shape[1]]
        region[mask] = shape.label
    return label


def coco_rle_counts(counts: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' format:
    6-bit groups from ``'0'``, runs after the second stored as differences)."""
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(counts):
                raise ShapeError(f'truncated RLE string {counts[:40]!r}')
            c = ord(counts[pos]) - 48
            value |= (c & 0x1f) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def decode_runs(runs: Sequence[int], height: int, width: int,
                column_major: bool) -> np.ndarray:
    """A bool mask from alternating runs of 0s and 1s (0s first)."""
    runs = np.asarray(runs, dtype=np.int64)
    if (runs < 0).any() or runs.sum() != height * width:
        raise ShapeError(
            f'RLE runs add up to {int(runs.sum())} pixels with '
            f'{int((runs < 0).sum())} negative; a {height} x {width} mask '
            f'needs {height * width}')
    flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    return flat.reshape((width, height)).T if column_major else \
        flat.reshape((height, width))
