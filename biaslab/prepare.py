"""Image preparation: centre square crop, grayscale, antialiased resize to a fixed size, uint8.

:func:`prepare_files` decodes image files in parallel (one process per core), streams each
chunk's pixels into the output array (a memory map: memory stays bounded whatever the number of
images) and returns, per file, ``None`` or the reason it was rejected. A file that cannot be
decoded never stops the run: the caller decides what fraction of rejects is acceptable.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

# 16-bit and float modes: scaled to 8 bits by their range, not clipped
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# modes whose conversion to L Pillow does directly (alpha, if any, is dropped, not composited)
_DIRECT_MODES = ("L", "LA", "La", "1", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX")
_ORIENTATION = 0x0112  # EXIF tag
CHUNK = 16  # images per task: large enough to amortise inter-process overhead


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


def decode_file(path: str, size: int) -> np.ndarray:
    """Read one image file and prepare it (EXIF orientation applied). Raises on bad files."""
    with Image.open(path) as image:
        if image.format == "JPEG" and min(image.size) >= 2 * size:
            # let libjpeg decode at 1/2, 1/4 or 1/8 scale, staying >= size: much faster
            image.draft("L", (size, size))
        image.load()
        if image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
        return to_square_gray(image, size)


def _reason(path: str, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing file"
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return "empty file"
    text = str(exc).splitlines()[0] if str(exc) else ""
    if "truncated" in text:
        return f"truncated image ({text})"
    return f"unreadable ({type(exc).__name__}: {text})"


def _decode_chunk(task: tuple[int, list[str], int]):
    """Worker: decode a chunk of files -> (start, pixels (k, size, size), reasons)."""
    start, paths, size = task
    block = np.zeros((len(paths), size, size), dtype=np.uint8)
    reasons: list[str | None] = [None] * len(paths)
    for i, path in enumerate(paths):
        try:
            block[i] = decode_file(path, size)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a rejected file
            reasons[i] = _reason(path, exc)
    return start, block, reasons


def prepare_files(
    paths: list[str], size: int, out: np.ndarray, *, workers: int = 0, progress: bool = True
) -> list[str | None]:
    """Decode and prepare ``paths`` into ``out[i]`` (uint8, shape (len(paths), size, size)).

    Parameters
    ----------
    paths : list of str
        Image files (any format Pillow reads).
    size : int
        Side of the square output images.
    out : ndarray or memmap of uint8
        Written chunk by chunk as results arrive; a rejected file's slot is left at 0.
    workers : int
        Decoding processes; 0: one per available core. 1 decodes in this process.
    progress : bool
        Show a progress bar with images/s on stderr.

    Returns
    -------
    reasons : list of (str or None)
        ``None`` for a prepared image, else why it was rejected.
    """
    if out.shape != (len(paths), size, size) or out.dtype != np.uint8:
        raise ValueError(f"out: expected uint8 {(len(paths), size, size)}, "
                         f"got {out.dtype} {out.shape}")
    from tqdm import tqdm

    workers = workers or len(os.sched_getaffinity(0))
    tasks = [(i, paths[i:i + CHUNK], size) for i in range(0, len(paths), CHUNK)]
    reasons: list[str | None] = [None] * len(paths)
    bar = tqdm(total=len(paths), unit="img", file=sys.stderr, disable=not progress,
               desc="prepare", smoothing=0.1)
    with bar:
        if workers == 1 or len(tasks) < 2:
            results = map(_decode_chunk, tasks)
            _collect(results, out, reasons, bar)
        else:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(workers) as pool:
                _collect(pool.imap(_decode_chunk, tasks), out, reasons, bar)
    return reasons


def decode_source(src, size: int, out: np.ndarray, *, workers: int = 0):
    """Decode the image files of a file source (:class:`biaslab.sources.Source`) into ``out``.

    Returns the mask of the rows decoded, and every rejected image: the source's own rejects
    (missing files, paths out of the root, ...) then the files that failed to decode.
    """
    from biaslab.sources._files import rejected_frame

    reasons = pd.Series(prepare_files(src.paths, size, out, workers=workers), dtype=object)
    bad = reasons.notna().to_numpy()
    rejected = pd.concat([src.rejected, rejected_frame(src.index["source"][bad], reasons[bad])],
                         ignore_index=True)
    return ~bad, rejected


def _collect(results, out, reasons, bar) -> None:
    for start, block, chunk_reasons in results:
        out[start:start + len(block)] = block
        reasons[start:start + len(block)] = chunk_reasons
        bar.update(len(block))


def copy_rows(source: np.ndarray, keep: np.ndarray, dest: np.ndarray, chunk: int = 1024) -> None:
    """``dest[:] = source[keep]`` chunk by chunk (bounded memory between two memory maps)."""
    rows = np.flatnonzero(keep)
    for i in range(0, len(rows), chunk):
        dest[i:i + chunk] = source[rows[i:i + chunk]]


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


def check_rejected(rejected, total: int, max_fraction: float) -> None:
    """Fail when more than ``max_fraction`` of ``total`` candidate images were rejected.

    ``rejected`` is the table (``path``, ``reason``); the message shows the first few.
    """
    n = len(rejected)
    if total and n / total > max_fraction:
        shown = "; ".join(f"{p}: {r}" for p, r in zip(rejected["path"][:5], rejected["reason"][:5],
                                                       strict=True))
        raise ValueError(f"{n} of {total} images rejected ({n / total:.1%}), more than "
                         f"prepare.max_rejected_fraction = {max_fraction:g}; first: {shown}")
