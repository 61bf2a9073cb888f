"""Turn images as users have them into (H, W, 3) uint8 BGR model inputs.

Every input kind goes through the same rules, so a file, the array read from it
and the PIL image opened from it give the same pixels:

- grayscale is repeated into three channels;
- an alpha channel is dropped (the colour channels are kept as they are, not
  composited onto a background);
- 16-bit values are scaled linearly onto 8 bits over the full range,
  ``round(v * 255 / 65535)`` (0 -> 0, 65535 -> 255); images that use only part
  of the 16-bit range (12-bit sensors, ...) come out dark and should be
  stretched by the caller first;
- JPEG/TIFF EXIF orientation is applied, so the result is upright as viewers
  show it.

Files are decoded with OpenCV, as mmseg's ``LoadImageFromFile`` does by
default, so the pixels match what the model saw in training.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import cv2
import numpy as np
from PIL import Image, ImageOps

from ..errors import ConvsegError

ImageInput = Union[str, Path, np.ndarray, Image.Image]

CHANNEL_ORDERS = ('bgr', 'rgb')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class ImageReadError(ConvsegError, ValueError):
    """Raised when an input cannot be turned into an image."""


def to_uint8(image: np.ndarray, source: str = 'array') -> np.ndarray:
    """Scale a uint8 or uint16 array to uint8 (16-bit: round(v*255/65535))."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return np.rint(image.astype(np.float32) * (255.0 / 65535.0)).astype(
            np.uint8)
    raise ImageReadError(
        f'{source}: unsupported pixel type {image.dtype}; expected uint8 or '
        f'uint16. Convert it first, e.g. floats in [0, 1] with '
        f'(img * 255).round().astype(np.uint8).')


def to_bgr_uint8(image: np.ndarray, channel_order: str = 'bgr',
                 source: str = 'array') -> np.ndarray:
    """Normalise an array image to (H, W, 3) uint8 BGR.

    ``image`` is (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), uint8 or uint16,
    with colour channels in ``channel_order`` ('bgr' as cv2 reads, or 'rgb').
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f'channel_order must be one of {CHANNEL_ORDERS}, '
                         f'got {channel_order!r}')
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageReadError(
            f'{source}: expected an image of shape (H, W), (H, W, 1), '
            f'(H, W, 3) or (H, W, 4), got {image.shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageReadError(f'{source}: empty image of shape {image.shape}')
    image = to_uint8(image[:, :, :3], source)
    if channel_order == 'rgb':
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def pil_to_bgr(image: Image.Image, source: str = 'PIL image') -> np.ndarray:
    """Convert a PIL image of any common mode to upright BGR uint8.

    Pillow itself reads 16-bit RGB PNGs as 8-bit RGB (high byte only); pass
    their path instead to get the rounding described above.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(
                f'{source}: {image.mode} pixel values outside 0..65535')
        return to_bgr_uint8(values.astype(np.uint16), 'rgb', source)
    if image.mode == 'F':
        raise ImageReadError(
            f'{source}: floating-point (mode F) images are not supported; '
            f'convert to 8-bit first')
    if image.mode != 'RGB':
        image = image.convert('RGB')
    return to_bgr_uint8(np.asarray(image), 'rgb', source)


def read_image(path: Union[str, Path]) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR, upright per its EXIF tag.

    Raises :class:`FileNotFoundError` for a missing file and
    :class:`ImageReadError` naming the file when it cannot be decoded.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image file {path} does not exist')
    data = np.fromfile(path, dtype=np.uint8)
    # IMREAD_COLOR applies the EXIF orientation, repeats grayscale and drops
    # alpha; IMREAD_ANYDEPTH keeps 16-bit values for the scaling above.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) \
        if data.size else None
    if image is None:
        raise ImageReadError(
            f'cannot decode image file {path}: it is empty, corrupt or not in '
            f'an image format OpenCV reads ({", ".join(IMAGE_SUFFIXES)})')
    return to_bgr_uint8(image, 'bgr', path)


def load_image(source: ImageInput, channel_order: str = 'bgr') -> np.ndarray:
    """Load a path, array or PIL image as (H, W, 3) uint8 BGR.

    ``channel_order`` describes array inputs only: 'bgr' (as cv2 reads) or
    'rgb'. Paths and PIL images carry their own order.
    """
    if isinstance(source, (str, Path)):
        return read_image(source)
    if isinstance(source, np.ndarray):
        return to_bgr_uint8(source, channel_order)
    if isinstance(source, Image.Image):
        return pil_to_bgr(source)
    raise TypeError(f'expected an image path, numpy array or PIL image, got '
                    f'{type(source).__name__}')

