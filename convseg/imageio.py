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
  show it;
- a file whose header declares more than :func:`max_image_pixels` pixels is
  refused before any pixel is decoded (:class:`ImageTooLargeError`), so a
  small file that expands to gigabytes (a decompression bomb) cannot exhaust
  the memory. The limit is one setting shared by every convseg reader
  (:func:`read_image`, the dataset checks, training through
  ``SkipUnreadable``): the environment variable
  ``CONVSEG_MAX_IMAGE_PIXELS``, else :data:`DEFAULT_MAX_IMAGE_PIXELS`. Being an
  environment variable, it reaches data-loader workers and every process of a
  distributed run.

Files are decoded with OpenCV, as mmseg's ``LoadImageFromFile`` does by
default, so the pixels match what the model saw in training.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from collections.abc import Iterator
from typing import Union

import cv2
import numpy as np
from PIL import Image, ImageOps

from .errors import ConvsegError

ImageInput = Union[str, Path, np.ndarray, Image.Image]

CHANNEL_ORDERS = ('bgr', 'rgb')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


#: the environment variable that sets the pixel limit of every reader
MAX_PIXELS_ENV = 'CONVSEG_MAX_IMAGE_PIXELS'
#: the limit when the variable is unset: Pillow's own threshold (about
#: 9459 x 9459), ten times a 4K frame and 40 times a Cityscapes image
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
#: OpenCV's own decoding limit unless OPENCV_IO_MAX_IMAGE_PIXELS is set
OPENCV_MAX_IMAGE_PIXELS = 1 << 30


class ImageReadError(ConvsegError, ValueError):
    """Raised when an input cannot be turned into an image."""


class ImageTooLargeError(ImageReadError):
    """An image file declares more pixels than :func:`max_image_pixels`."""

    def __init__(self, path: str, size: tuple[int, int], limit: int) -> None:
        width, height = size
        pixels = width * height
        opencv = (f' (and OPENCV_IO_MAX_IMAGE_PIXELS={pixels}, which OpenCV '
                  'reads when it starts)' if pixels > OPENCV_MAX_IMAGE_PIXELS
                  else '')
        super().__init__(
            f'image {path} declares {width}x{height} = {pixels:,} pixels, '
            f'more than the limit of {limit:,} pixels (a guard against '
            'decompression bombs); it was not decoded. If the file is '
            f'trusted, raise the limit with {MAX_PIXELS_ENV}={pixels} in the '
            f'environment{opencv}.')
        self.path, self.size, self.limit = path, size, limit


def max_image_pixels() -> int:
    """The largest image, in pixels, that convseg's readers decode.

    ``$CONVSEG_MAX_IMAGE_PIXELS`` when set, else
    :data:`DEFAULT_MAX_IMAGE_PIXELS`.
    """
    value = os.environ.get(MAX_PIXELS_ENV, '').strip()
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    if not value.isdigit() or int(value) == 0:
        raise ValueError(f'{MAX_PIXELS_ENV}={value!r}: expected a positive '
                         'whole number of pixels, e.g. '
                         f'{MAX_PIXELS_ENV}={DEFAULT_MAX_IMAGE_PIXELS * 4}')
    return int(value)


@contextlib.contextmanager
def pillow_pixel_limit(limit: int | None) -> Iterator[None]:
    """Run the block with Pillow's own bomb check set to ``limit`` pixels
    (``None``: off), so that Pillow neither refuses what the convseg limit
    allows nor warns about it."""
    saved = Image.MAX_IMAGE_PIXELS
    # Pillow raises above twice its setting and warns above it
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def declared_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the file's header, without decoding pixels;
    ``None`` if Pillow does not know the format."""
    try:
        with pillow_pixel_limit(None), Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError):
        return None


def check_image_size(path: str | Path,
                     limit: int | None = None) -> None:
    """Raise :class:`ImageTooLargeError` if ``path`` declares more than
    ``limit`` pixels (default :func:`max_image_pixels`)."""
    limit = max_image_pixels() if limit is None else limit
    size = declared_size(path)
    if size is not None and size[0] * size[1] > limit:
        raise ImageTooLargeError(os.fspath(path), size, limit)


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


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR, upright per its EXIF tag.

    Raises :class:`FileNotFoundError` for a missing file,
    :class:`ImageTooLargeError` when its header declares more pixels than
    :func:`max_image_pixels` (nothing is decoded then) and
    :class:`ImageReadError` naming the file when it cannot be decoded.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image file {path} does not exist')
    check_image_size(path)
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

