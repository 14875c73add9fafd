"""One image prepared: centre square crop, grayscale, antialiased resize to a fixed size, uint8.

:func:`decode_file` reads a file (any format Pillow reads, EXIF orientation applied), after
checking from its header that it is not too small or too elongated to be an image of the data
set (:func:`check_shape`, raising :class:`RejectedImage`); :func:`to_square_gray` prepares a
decoded image, :func:`prepare_arrays` a stack already in memory. :func:`digest` names prepared
pixels, so that two files with the same pixels are found as duplicates. Decoding many files in
parallel into ``pixels.npy`` is :mod:`biaslab.data.prepare`.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageOps

# 16-bit and float modes: scaled to 8 bits by their range, not clipped
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# modes whose conversion to L Pillow does directly (alpha, if any, is dropped, not composited)
_DIRECT_MODES = ("L", "LA", "La", "1", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX")
_ORIENTATION = 0x0112  # EXIF tag
MIN_SIDE = 8  # default prepare.min_side: a shorter side below it is not an image of the data
MAX_ASPECT = 10.0  # default prepare.max_aspect: its centre square would keep < 1/10 of it


class RejectedImage(ValueError):
    """An image that opens but cannot be used; the message is the reason listed."""


def _gray8(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit grayscale (L)."""
    if image.mode in _WIDE_MODES:
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return Image.fromarray(np.rint((arr - lo) * scale).astype(np.uint8), mode="L")
    if image.mode not in _DIRECT_MODES:  # CMYK, YCbCr, LAB, HSV: through RGB
        image = image.convert("RGB")
    return image.convert("L")


def to_square_gray(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop ``image`` to a square, convert to 8-bit grayscale and resize to ``size``.

    Returns an array of uint8, shape (size, size). Resizing uses Lanczos filtering, which
    antialiases when shrinking and interpolates smoothly when enlarging. 16-bit and float
    images are scaled to 0..255 by their own range (min..max of the crop).
    """
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    # crop before converting: less to convert, and a 16-bit range is that of what is kept
    gray = _gray8(image.crop((left, top, left + side, top + side)))
    return np.asarray(gray.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def check_shape(width: int, height: int, *, min_side: int = MIN_SIDE,
                max_aspect: float = MAX_ASPECT) -> None:
    """Raise :class:`RejectedImage` for an image too small or too elongated to be used.

    A shorter side below ``min_side`` (at least 1) is an icon or a broken header, not a scan; a
    ratio longer/shorter side above ``max_aspect`` would lose most of the image to the centre
    crop (a strip of 10000x10 keeps its middle 10x10).
    """
    short, long = sorted((width, height))
    if short < max(min_side, 1):
        raise RejectedImage(f"too small: {width}x{height} px (prepare.min_side = {min_side})")
    if long > max_aspect * short:
        raise RejectedImage(f"extreme aspect ratio: {width}x{height} px, "
                            f"{round(long / short, 1):g}:1 (prepare.max_aspect = {max_aspect:g})")


def decode_file(path: str, size: int, *, min_side: int = MIN_SIDE,
                max_aspect: float = MAX_ASPECT) -> np.ndarray:
    """Read one image file and prepare it (EXIF orientation applied). Raises on bad files.

    The image's size is checked (:func:`check_shape`) from its header, before any pixel is
    decoded.
    """
    with Image.open(path) as image:
        check_shape(*image.size, min_side=min_side, max_aspect=max_aspect)
        if image.format == "JPEG" and min(image.size) >= 2 * size:
            # let libjpeg decode at 1/2, 1/4 or 1/8 scale, staying >= size: much faster
            image.draft("L", (size, size))
        image.load()
        if image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
        return to_square_gray(image, size)


def digest(pixels: np.ndarray) -> bytes:
    """Content hash of prepared pixels (blake2b, 128 bits): equal images, equal digests."""
    return hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16).digest()


def prepare_arrays(images: np.ndarray, size: int) -> np.ndarray:
    """Prepare a stack of uint8 grayscale images (N, h, w) into (N, size, size) uint8."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"images: expected a uint8 array of shape (N, h, w), got {images.dtype} {images.shape}"
        )
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = to_square_gray(Image.fromarray(img, mode="L"), size)
    return out
