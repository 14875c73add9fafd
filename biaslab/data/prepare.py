"""Image files prepared into ``pixels.npy``, the pixels of every image of a source.

:func:`prepare_files` decodes image files in parallel (one process per core), each file as
:func:`biaslab.data.images.decode_file` prepares it, streams each chunk's pixels into the
output array (a memory map: memory stays bounded whatever the number of images) and returns,
per file, ``None`` or the reason it was rejected. A file that cannot be decoded, or is too
small or too elongated to be an image of the data set, never stops the run: the caller decides
what fraction of rejects is acceptable.

:func:`write_pixels` is what the prepare stage runs: decode a source, drop duplicates (the same
file reached twice, or two files with the same prepared pixels: left in, one copy could land in
train and the other in test), check that what is left can train a classifier (images of both
labels), and only then write ``pixels.npy``.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from biaslab import artifacts
from biaslab.data.images import (
    MAX_ASPECT,
    MIN_SIDE,
    RejectedImage,
    decode_file,
    digest,
    prepare_arrays,
)
from biaslab.data.sources._files import rejected_frame

# progress callback: called with the number of images just done (the stage draws a bar)
OnImages = Callable[[int], None] | None

CHUNK = 16  # images per task: large enough to amortise inter-process overhead


def _reason(path: str, exc: BaseException) -> str:
    """Why the file at ``path`` was rejected, from ``exc``: the same text on every machine."""
    if isinstance(exc, RejectedImage):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "missing file"
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return "empty file"
    text = str(exc).splitlines()[0] if str(exc) else ""
    # Pillow and OSError put the absolute path in their message: rejected.csv lists the path as
    # the source gives it already, and classifying on the rest keeps a folder named
    # "truncated" from making every unreadable file in it a truncated one
    for name in filter(None, (path, getattr(exc, "filename", None))):
        text = re.sub(rf"\s*:?\s*(['\"]?){re.escape(str(name))}\1", "", text)
    if "truncated" in text.lower():
        return f"truncated image ({text})"
    return f"unreadable ({type(exc).__name__}: {text})"


def _start_method() -> str:
    """fork (fast: the workers inherit the decoders), unless torch is loaded in this process:
    its OpenMP thread pool is not fork-safe, and a worker forked while one of its locks is held
    hangs (seen in the test runner, which trains models in-process). The prepare stage never
    imports torch; a caller that did (a notebook, the tests) gets workers from a fork server,
    which imports the decoders once."""
    return "forkserver" if "torch" in sys.modules else "fork"


def _worker_ignores_sigint() -> None:
    """Ctrl-C reaches the whole process group: the parent stops the pool and says so once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_chunk(task: tuple[int, list[str | None], int, int, float]):
    """Worker: decode a chunk of files -> (start, pixels (k, size, size), reasons, digests).

    The digests are computed here, in the worker, so hashing runs in parallel too.
    """
    start, paths, size, min_side, max_aspect = task
    block = np.zeros((len(paths), size, size), dtype=np.uint8)
    reasons: list[str | None] = [None] * len(paths)
    digests: list[bytes | None] = [None] * len(paths)
    for i, path in enumerate(paths):
        if path is None:
            continue
        try:
            block[i] = decode_file(path, size, min_side=min_side, max_aspect=max_aspect)
            digests[i] = digest(block[i])
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a rejected file
            reasons[i] = _reason(path, exc)
    return start, block, reasons, digests


def prepare_files(
    paths: list[str | None], size: int, out: np.ndarray, *, workers: int = 0,
    progress: OnImages = None, min_side: int = MIN_SIDE, max_aspect: float = MAX_ASPECT,
    digests: list | None = None,
) -> list[str | None]:
    """Decode and prepare ``paths`` into ``out[i]`` (uint8, shape (len(paths), size, size)).

    Parameters
    ----------
    paths : list of (str or None)
        Image files (any format Pillow reads); None: skipped (slot set to 0, reason None).
    size : int
        Side of the square output images.
    out : ndarray or memmap of uint8
        Written chunk by chunk as results arrive; a rejected file's slot is left at 0.
    workers : int
        Decoding processes; 0: one per available core. 1 decodes in this process.
    progress : callable, optional
        Called with the number of images done after each chunk (the stage draws a bar).
    min_side, max_aspect : int, float
        Smallest shorter side and largest longer/shorter ratio accepted (:func:`check_shape`).
    digests : list, optional
        If given, replaced in place by one entry per path: the :func:`digest` of the prepared
        image, or None where it was rejected or skipped.

    Returns
    -------
    reasons : list of (str or None)
        ``None`` for a prepared (or skipped) image, else why it was rejected.
    """
    if out.shape != (len(paths), size, size) or out.dtype != np.uint8:
        raise ValueError(f"out: expected uint8 {(len(paths), size, size)}, "
                         f"got {out.dtype} {out.shape}")
    workers = workers or len(os.sched_getaffinity(0))
    tasks = [(i, paths[i:i + CHUNK], size, min_side, max_aspect)
             for i in range(0, len(paths), CHUNK)]
    reasons: list[str | None] = [None] * len(paths)
    digests = [] if digests is None else digests
    digests[:] = [None] * len(paths)
    if workers == 1 or len(tasks) < 2:
        _collect(map(_decode_chunk, tasks), out, reasons, digests, progress)
    else:
        ctx = multiprocessing.get_context(_start_method())
        with ctx.Pool(workers, initializer=_worker_ignores_sigint) as pool:
            _collect(pool.imap(_decode_chunk, tasks), out, reasons, digests, progress)
    return reasons


def _collect(results, out, reasons, digests, progress) -> None:
    for start, block, chunk_reasons, chunk_digests in results:
        out[start:start + len(block)] = block
        reasons[start:start + len(block)] = chunk_reasons
        digests[start:start + len(block)] = chunk_digests
        if progress:
            progress(len(block))


# ------------------------------------------------------------------------------- duplicates


def _where(path: str, table_row) -> str:
    return path if table_row is None else f"{path} (table row {table_row})"


def duplicate_reasons(keys, labels, names, table_rows, *, same: str) -> list[str | None]:
    """Reject each image whose key was seen earlier (the first copy is kept).

    ``keys`` say what makes two images one (a normalised path, a pixel digest; None: not
    compared); ``labels``, ``names`` (paths as the source lists them) and ``table_rows`` (None
    where the source has no table) are per image; ``same`` says what equal keys mean, for the
    error. Returns ``duplicate of PATH (table row N)`` (the copy kept) for each later copy,
    else None. Copies with different labels raise ValueError: one image cannot be both 0 and 1.
    """
    first: dict = {}
    reasons: list[str | None] = [None] * len(keys)
    conflicts = []
    for i, key in enumerate(keys):
        if key is None:
            continue
        j = first.setdefault(key, i)
        if j != i:
            reasons[i] = f"duplicate of {_where(names[j], table_rows[j])}"
            if labels[i] != labels[j]:
                conflicts.append((j, i))
    if conflicts:
        j, i = conflicts[0]
        more = f" ({len(conflicts)} such pairs, this is the first)" if len(conflicts) > 1 else ""
        raise ValueError(
            f"{_where(names[j], table_rows[j])} has label {labels[j]} and "
            f"{_where(names[i], table_rows[i])} label {labels[i]}, but they are the same {same}: "
            f"one image cannot be both 0 and 1; correct the label of one and remove the other"
            f"{more}")
    return reasons


def decode_source(src, size: int, out: np.ndarray, *, workers: int = 0,
                  min_side: int = MIN_SIDE, max_aspect: float = MAX_ASPECT,
                  progress: OnImages = None):
    """Prepare the images of a source (:class:`biaslab.data.sources.Source`) into ``out``.

    ``out`` has one row per row of ``src.index``. A file reached twice (``h/../a.png`` and
    ``a.png``, or through a symbolic link: the source's paths are resolved) is decoded once;
    an image whose prepared pixels equal those of an earlier one is a duplicate too. Either
    way the first copy is kept and the later ones rejected, so that no image can land in two
    splits.

    Returns
    -------
    keep : ndarray of bool
        The rows of ``src.index`` prepared and kept.
    rejected : DataFrame (``path``, ``table_row``, ``reason``)
        The source's own rejects (missing files, paths out of the root, ...), then the
        duplicates and the files that could not be used, in the source's order.

    Raises
    ------
    ValueError
        When two copies of one image carry different labels.
    """
    rows = ([None] * len(src.index) if src.table_rows is None  # a source without a table
            else [None if pd.isna(r) else int(r) for r in src.table_rows])
    labels = src.index["label"].tolist()
    names = src.index["source"].astype(str).tolist()
    if src.images is not None:  # in memory (digits): no file to read, nor to compare
        out[:] = prepare_arrays(src.images, size)
        same_file = failed = [None] * len(out)
        digests = [digest(image) for image in out]
    else:
        same_file = duplicate_reasons([os.path.normpath(p) for p in src.paths], labels, names,
                                      rows, same="file")
        todo = [None if dup else p for p, dup in zip(src.paths, same_file, strict=True)]
        digests: list = []
        failed = prepare_files(todo, size, out, workers=workers, progress=progress,
                               min_side=min_side, max_aspect=max_aspect, digests=digests)
    same_pixels = duplicate_reasons(digests, labels, names, rows,
                                    same="image (same pixels after preparation)")
    reasons = [a or b or c for a, b, c in zip(same_file, failed, same_pixels, strict=True)]
    bad = np.array([r is not None for r in reasons], dtype=bool)
    found = rejected_frame(np.array(names, dtype=object)[bad], np.array(reasons, dtype=object)[bad],
                           np.array(rows, dtype=object)[bad])
    return ~bad, pd.concat([src.rejected, found], ignore_index=True)


# ------------------------------------------------------------------------ checks and writing


def copy_rows(source: np.ndarray, keep: np.ndarray, dest: np.ndarray, chunk: int = 1024) -> None:
    """``dest[:] = source[keep]`` chunk by chunk (bounded memory between two memory maps)."""
    rows = np.flatnonzero(keep)
    for i in range(0, len(rows), chunk):
        dest[i:i + chunk] = source[rows[i:i + chunk]]


def _first(rejected, n: int = 5) -> str:
    return "; ".join(f"{p}: {r}" for p, r in zip(rejected["path"][:n], rejected["reason"][:n],
                                                   strict=True))


def check_rejected(rejected, total: int, max_fraction: float) -> None:
    """Fail when more than ``max_fraction`` of ``total`` candidate images were rejected.

    ``rejected`` is the table (``path``, ``reason``, ...); the message shows the first few.
    """
    n = len(rejected)
    if total and n / total > max_fraction:
        raise ValueError(f"{n} of {total} images rejected ({n / total:.1%}), more than "
                         f"prepare.max_rejected_fraction = {max_fraction:g}; "
                         f"first: {_first(rejected)}")


def check_usable(labels, rejected, *, total: int, max_rejected_fraction: float,
                 where: str) -> None:
    """Fail unless the images kept can train a classifier: some images, both labels, and not
    more than ``max_rejected_fraction`` of ``total`` rejected (:func:`check_rejected`).

    ``where`` names the data in the messages (e.g. ``data.root = /data/xrays``).
    """
    labels = np.asarray(labels)
    n_rejected = len(rejected)
    if len(labels) == 0:
        why = (f" (first: {_first(rejected)})" if n_rejected else
               ": the source lists no image (an empty table, or no image file where it looks)")
        raise ValueError(f"0 usable images in {where}; {n_rejected} rejected{why}")
    check_rejected(rejected, total, max_rejected_fraction)
    values = np.unique(labels)
    if len(values) < 2:
        raise ValueError(
            f"every image has label {values[0]} ({len(labels)} images, {n_rejected} rejected) "
            f"in {where}; a classifier needs both 0 and 1: check data.label_column / "
            f"data.positive / data.negative / data.positive_folder / data.positive_class / "
            f"data.finding, whichever sets the label of this source")


def write_pixels(src, path: str | Path, *, size: int, max_rejected_fraction: float, where: str,
                 workers: int = 0, min_side: int = MIN_SIDE, max_aspect: float = MAX_ASPECT,
                 progress: OnImages = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prepare the images of ``src`` into the .npy file ``path`` (uint8, (N, size, size)).

    Nothing appears at ``path`` unless :func:`check_usable` passes. The pixels are decoded into
    a memory-mapped temporary file beside it (memory stays bounded), the kept rows copied into
    a second one when some were rejected (rows stay contiguous: row i of the file is row i of
    the index returned), which is then renamed onto ``path``. Temporaries are removed on
    failure, and on the next run when the process was killed.

    Parameters
    ----------
    src : biaslab.data.sources.Source
    path : str or Path
        The ``pixels.npy`` to write.
    size, workers, min_side, max_aspect :
        As in :func:`prepare_files`.
    max_rejected_fraction : float
        More rejected images than this fraction of all candidates is an error.
    where : str
        The data, named in error messages (``data.root = ...``).

    Returns
    -------
    index : DataFrame
        The rows of ``src.index`` kept, renumbered from 0.
    rejected : DataFrame (``path``, ``table_row``, ``reason``)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    artifacts.clean_stale_temps(final.parent, final.name)  # gigabytes at NIH scale
    temps = [artifacts.temp_path(final)]
    try:
        out = np.lib.format.open_memmap(temps[0], mode="w+", dtype=np.uint8,
                                        shape=(len(src.index), size, size))
        keep, rejected = decode_source(src, size, out, workers=workers, min_side=min_side,
                                       max_aspect=max_aspect, progress=progress)
        check_usable(src.index["label"].to_numpy()[keep], rejected,
                     total=len(src.index) + len(src.rejected),
                     max_rejected_fraction=max_rejected_fraction, where=where)
        if not keep.all():  # copy the kept rows into a file of their size
            temps.append(artifacts.temp_path(final))
            kept = np.lib.format.open_memmap(temps[1], mode="w+", dtype=np.uint8,
                                             shape=(int(keep.sum()), size, size))
            copy_rows(out, keep, kept)
            out = kept
        out.flush()
        os.replace(temps[-1], final)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return src.index[keep].reset_index(drop=True), rejected
