"""Image preparation: centre square crop, grayscale, antialiased resize to a fixed size, uint8."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_square_gray(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop ``image`` to a square, convert to 8-bit grayscale and resize to ``size``.

    Returns an array of uint8, shape (size, size). Resizing uses Lanczos filtering, which
    antialiases when shrinking and interpolates smoothly when enlarging.
    """
    gray = image.convert("L")
    w, h = gray.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = gray.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


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
