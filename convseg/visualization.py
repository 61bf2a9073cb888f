"""Show predicted label maps: colour overlays, palettes, legend, palette PNGs.

:func:`overlay` blends each labelled pixel with its class colour,
``(1 - opacity) * image + opacity * colour`` rounded to the nearest integer,
and leaves every other pixel exactly as it was. A pixel is labelled when its
value is a class id, ``0 <= value < len(classes)``, and not ``ignore_index``.
The legend is a strip appended below (landscape images) or to the right
(portrait images), or on the other side when that makes a much smaller
picture; it is never drawn over the image, which keeps the top-left corner of
the result.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]

PALETTE_NAMES = ('ade20k', 'cityscapes', 'random')

LEGEND_BACKGROUND: Color = (255, 255, 255)
LEGEND_TEXT: Color = (33, 33, 33)
LEGEND_MUTED: Color = (110, 110, 110)
LEGEND_RULE: Color = (200, 200, 200)
SWATCH_BORDER: Color = (60, 60, 60)


@dataclass(frozen=True)
class LegendEntry:
    """One class present in a label map: id, name, colour and pixel share.

    ``share`` is ``pixels`` divided by all pixels of the label map.
    """

    class_id: int
    name: str
    color: Color
    pixels: int
    share: float


def random_palette(num_classes: int, seed: int = 0) -> list[Color]:
    """``num_classes`` well-separated colours, the same for the same seed.

    Hues step by the golden ratio from a seeded start, so neighbouring class
    ids differ strongly; saturation and brightness cycle through a few
    levels so that many classes stay distinguishable.
    """
    rng = np.random.default_rng(seed)
    hue = float(rng.random())
    saturations = (0.85, 0.55, 0.95, 0.7)
    values = (0.95, 0.75, 0.6, 0.85, 1.0)
    palette = []
    for index in range(num_classes):
        hue = (hue + 0.6180339887498949) % 1.0
        red, green, blue = colorsys.hsv_to_rgb(
            hue, saturations[index % len(saturations)],
            values[index % len(values)])
        palette.append((round(red * 255), round(green * 255),
                        round(blue * 255)))
    return palette


def get_palette(name: str, num_classes: int) -> list[Color]:
    """``num_classes`` colours of a named palette: ade20k, cityscapes, random.

    A named palette shorter than ``num_classes`` is extended with
    :func:`random_palette` colours; a longer one is cut.
    """
    if name not in PALETTE_NAMES:
        raise ValueError(f'unknown palette {name!r}; choose one of '
                         f'{", ".join(PALETTE_NAMES)}')
    if name == 'random':
        return random_palette(num_classes)
    from mmseg.utils import get_palette as mmseg_palette
    colors = [tuple(int(c) for c in color) for color in mmseg_palette(name)]
    if len(colors) < num_classes:
        colors += random_palette(num_classes)[len(colors):]
    return colors[:num_classes]


def labelled_mask(label_map: np.ndarray, num_classes: int,
                  ignore_index: int = 255) -> np.ndarray:
    """(H, W) bool: pixels holding a class id (not ``ignore_index``)."""
    return ((label_map >= 0) & (label_map < num_classes)
            & (label_map != ignore_index))


def legend_entries(label_map: np.ndarray, classes: Sequence[str],
                   palette: Sequence[Sequence[int]],
                   ignore_index: int = 255) -> list[LegendEntry]:
    """The classes present in ``label_map`` (H, W), largest share first.

    Ties in pixel count are ordered by class id.
    """
    label_map = np.asarray(label_map)
    _check_palette(palette, classes)
    mask = labelled_mask(label_map, len(classes), ignore_index)
    counts = np.bincount(label_map[mask].astype(np.int64).ravel(),
                         minlength=len(classes))
    total = max(label_map.size, 1)
    present = [int(i) for i in np.flatnonzero(counts)]
    present.sort(key=lambda i: (-counts[i], i))
    return [
        LegendEntry(class_id=i, name=str(classes[i]),
                    color=tuple(int(c) for c in palette[i]),
                    pixels=int(counts[i]), share=float(counts[i]) / total)
        for i in present
    ]


def blend(image: np.ndarray, label_map: np.ndarray,
          palette: Sequence[Sequence[int]], num_classes: int,
          opacity: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """Blend class colours into labelled pixels of ``image`` (H, W, 3) RGB.

    Returns a new (H, W, 3) uint8 array; unlabelled pixels are copied as is.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f'opacity must be in [0, 1], got {opacity}')
    colors = np.asarray(palette, dtype=np.float32)[:num_classes]
    mask = labelled_mask(label_map, num_classes, ignore_index)
    out = image.copy()
    blended = ((1.0 - opacity) * image[mask].astype(np.float32)
               + opacity * colors[label_map[mask].astype(np.int64)])
    out[mask] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def overlay(image: np.ndarray, label_map: np.ndarray,
            palette: Sequence[Sequence[int]], classes: Sequence[str],
            opacity: float = 0.5, legend: bool = True,
            ignore_index: int = 255, with_labels: bool = False,
            return_legend: bool = False
            ) -> np.ndarray | tuple[np.ndarray, list[LegendEntry]]:
    """Draw ``label_map`` (H, W) over ``image`` (H, W, 3) RGB uint8.

    Returns an RGB uint8 array: the blended image (see the module docstring),
    with class names written on the regions when ``with_labels``, and with a
    legend strip (colour, name and pixel share of each class present, largest
    first) appended below or to the right when ``legend``. The image occupies
    the top-left (H, W) corner of the result. With ``return_legend`` the
    :func:`legend_entries` are returned too.
    """
    image = np.asarray(image)
    label_map = np.asarray(label_map)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image must be an (H, W, 3) uint8 RGB array, got '
                         f'shape {image.shape} and dtype {image.dtype}')
    if label_map.shape != image.shape[:2]:
        raise ValueError(f'label_map shape {label_map.shape} differs from the '
                         f'image size {image.shape[:2]}')
    entries = legend_entries(label_map, classes, palette, ignore_index)
    canvas = blend(image, label_map, palette, len(classes), opacity,
                   ignore_index)
    if with_labels:
        canvas = _draw_region_labels(canvas, label_map, entries)
    if legend:
        canvas = _append_legend(canvas, entries)
    return (canvas, entries) if return_legend else canvas


def mask_image(label_map: np.ndarray,
               palette: Sequence[Sequence[int]]) -> Image.Image:
    """A palette-mode ('P') PIL image whose pixel values are the class ids.

    It opens as a colour picture in any viewer and reads back as labels with
    ``np.asarray(Image.open(path))``. ``label_map`` values must be in 0..255.
    """
    label_map = np.asarray(label_map)
    if label_map.size and (label_map.min() < 0 or label_map.max() > 255):
        raise ValueError(
            f'a palette PNG holds class ids 0..255, the label map has values '
            f'{label_map.min()}..{label_map.max()}; save it with '
            f'np.save instead')
    image = Image.fromarray(label_map.astype(np.uint8))
    flat = [int(c) for color in list(palette)[:256] for c in color]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def _check_palette(palette: Sequence[Sequence[int]],
                   classes: Sequence[str]) -> None:
    if len(palette) < len(classes):
        raise ValueError(f'the palette has {len(palette)} colours for '
                         f'{len(classes)} classes; give one colour per class')


def _font(image_shape: tuple[int, ...]) -> ImageFont.ImageFont:
    size = int(np.clip(round(0.02 * max(image_shape[:2])), 12, 40))
    return ImageFont.load_default(size=size)


def _text_size(font: ImageFont.ImageFont, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom


def _share_text(share: float) -> str:
    return '<0.1%' if share < 0.0005 else f'{100 * share:.1f}%'


def _legend_layout(height: int, width: int, count: int, cell_w: int,
                   row_h: int, pad: int) -> tuple[bool, int, int]:
    """(below, rows, cols) of a legend of ``count`` cells for an image.

    Below suits landscape images and beside portrait ones; the other side is
    taken when it makes the picture at least 20% smaller (tiny or extreme
    images). Among equal pictures, fewer columns win.
    """
    best = None
    for below in (True, False):
        for cols in range(1, count + 1):
            rows = math.ceil(count / cols)
            cols = math.ceil(count / rows)
            strip_w = cols * cell_w + 2 * pad
            strip_h = rows * row_h + 2 * pad
            if below:
                area = (height + strip_h) * max(width, strip_w)
            else:
                area = max(height, strip_h) * (width + strip_w)
            if below != (width >= height):
                area *= 1.25
            key = (area, cols)
            if best is None or key < best[0]:
                best = (key, below, rows, cols)
    return best[1], best[2], best[3]


def _append_legend(image: np.ndarray,
                   entries: Sequence[LegendEntry]) -> np.ndarray:
    height, width = image.shape[:2]
    font = _font(image.shape)
    _, line = _text_size(font, 'Ag%')
    row_h = round(line * 1.6)
    swatch = line
    pad = max(6, line // 2)
    if entries:
        names = [e.name for e in entries]
        shares = [_share_text(e.share) for e in entries]
    else:
        names, shares = ['no labelled pixels'], ['']
    name_w = max(_text_size(font, text)[0] for text in names)
    share_w = max(_text_size(font, text)[0] for text in shares)
    cell_w = swatch + pad + name_w + 2 * pad + share_w + 2 * pad
    below, rows, cols = _legend_layout(height, width, len(names), cell_w,
                                       row_h, pad)
    strip_w = cols * cell_w + 2 * pad
    strip_h = rows * row_h + 2 * pad
    if below:
        canvas_h, canvas_w = height + strip_h, max(width, strip_w)
        origin = (0, height)
    else:
        canvas_h, canvas_w = max(height, strip_h), width + strip_w
        origin = (width, 0)
    canvas = Image.new('RGB', (canvas_w, canvas_h), LEGEND_BACKGROUND)
    canvas.paste(Image.fromarray(image), (0, 0))
    draw = ImageDraw.Draw(canvas)
    if below:
        draw.line([(0, height), (canvas_w - 1, height)], fill=LEGEND_RULE)
    else:
        draw.line([(width, 0), (width, canvas_h - 1)], fill=LEGEND_RULE)
    for index, (name, share) in enumerate(zip(names, shares)):
        col, row = divmod(index, rows)
        x = origin[0] + pad + col * cell_w
        y = origin[1] + pad + row * row_h + (row_h - line) // 2
        if entries:
            draw.rectangle([x, y, x + swatch - 1, y + swatch - 1],
                           fill=entries[index].color, outline=SWATCH_BORDER)
            text_x = x + swatch + pad
        else:
            text_x = x
        draw.text((text_x, y), name, font=font, fill=LEGEND_TEXT)
        share_x = x + cell_w - 2 * pad - _text_size(font, share)[0]
        draw.text((share_x, y), share, font=font, fill=LEGEND_MUTED)
    return np.asarray(canvas)


def _label_anchor(region: np.ndarray) -> tuple[int, int, int]:
    """(x, y, area) of the largest connected part of ``region``.

    (x, y) is the point of that part farthest from its edge, which lies inside
    it even when the part is not convex (a centroid may not).
    """
    _, components, stats, _ = cv2.connectedComponentsWithStats(
        region.astype(np.uint8), connectivity=4)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    part = np.pad((components == largest).astype(np.uint8), 1)
    distance = cv2.distanceTransform(part, cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y), int(stats[largest, cv2.CC_STAT_AREA])


def _draw_region_labels(image: np.ndarray, label_map: np.ndarray,
                        entries: Sequence[LegendEntry]) -> np.ndarray:
    """Write each class name on its largest region if that can hold it."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = _font(image.shape)
    stroke = max(1, round(getattr(font, 'size', 12) / 8))
    height, width = image.shape[:2]
    for entry in entries:
        x, y, area = _label_anchor(label_map == entry.class_id)
        left, top, right, bottom = draw.textbbox(
            (0, 0), entry.name, font=font, stroke_width=stroke)
        if area < (right - left) * (bottom - top):
            continue
        text_x = int(np.clip(x - (right + left) // 2, -left,
                             max(-left, width - right)))
        text_y = int(np.clip(y - (bottom + top) // 2, -top,
                             max(-top, height - bottom)))
        draw.text((text_x, text_y), entry.name, font=font,
                  fill=(255, 255, 255), stroke_width=stroke,
                  stroke_fill=(0, 0, 0))
    return np.asarray(canvas)


def resolve_palette(name: str | None, dataset_meta: dict) -> list[Color]:
    """The palette to draw with: a named one, else the model's own."""
    num_classes = len(dataset_meta['classes'])
    if name is not None:
        return get_palette(name, num_classes)
    return [tuple(int(c) for c in color)
            for color in dataset_meta['palette']][:num_classes]
