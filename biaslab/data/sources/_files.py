"""What the sources share: the :class:`Source` they yield, reading their tables as UTF-8,
safe path resolution under the data root, listing images, and the index columns in their
contract order and types."""

from __future__ import annotations

import codecs
import gzip
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from biaslab.data.metadata import empty_issues

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
INDEX_COLUMNS = ["image_id", "label", "patient_id", "source"]
REJECTED_COLUMNS = ["path", "table_row", "reason"]


def empty_rejected() -> pd.DataFrame:
    return rejected_frame([], [])


def rejected_frame(paths, reasons, table_rows=None) -> pd.DataFrame:
    """The ``rejected`` table: ``path`` as written in the source, ``table_row`` (the row of the
    source's table, numbered as in ``issues.csv``; NA without a table), ``reason``."""
    paths = pd.Series(paths, dtype="object").astype(str).to_numpy()
    rows = [pd.NA] * len(paths) if table_rows is None else list(table_rows)
    return pd.DataFrame({"path": paths, "table_row": pd.array(rows, dtype="Int64"),
                         "reason": pd.Series(reasons, dtype="object").to_numpy()},
                        columns=REJECTED_COLUMNS)


@dataclass
class Source:
    """What a source yields.

    Attributes
    ----------
    index : DataFrame
        One row per usable image (no ``row`` column yet).
    images : ndarray of uint8 (N, h, w), or None
        In-memory images (digits).
    paths : list of str, or None
        Absolute image paths aligned with ``index`` (file sources).
    rejected : DataFrame
        ``path`` (relative to the data root), ``table_row``, ``reason``.
    issues : DataFrame
        ``table_row``, ``column``, ``value``, ``reason`` of metadata left missing.
    table_rows : list of int (or None), or None
        Aligned with ``index``: the row of the source's table that lists the image (0 = the
        first row after the header, as ``issues`` numbers them; None for an image of a folder
        that its metadata table does not describe). None for sources without a table.
    """

    index: pd.DataFrame
    images: np.ndarray | None = None
    paths: list[str] | None = None
    rejected: pd.DataFrame = field(default_factory=empty_rejected)
    issues: pd.DataFrame = field(default_factory=empty_issues)
    table_rows: list[int | None] | None = None


def read_text_table(path: Path, **options) -> pd.DataFrame:
    """``pd.read_csv(path, **options)`` of a UTF-8 table (with or without a byte order mark).

    Another encoding is an error naming the file and the first byte that is not UTF-8, rather
    than a guess: Latin-1 decodes any bytes, so a cp1252, Mac Roman or UTF-16 table would be
    read as wrong text without a word. An empty file or a row pandas cannot split is an error
    naming the file (and the line) too.
    """
    try:
        table = pd.read_csv(path, encoding="utf-8", **options)
    except UnicodeDecodeError:  # its position is within pandas' buffer: find the byte again
        table, why = None, _not_utf8(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty file (no header line); a table needs a header line "
                         "naming its columns") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"{path}: {_unparsable(exc)}") from None
    else:  # UTF-16 without a byte order mark is valid UTF-8, with a NUL in every other byte
        why = None if not any("\x00" in str(c) for c in table.columns) else (
            "not UTF-8 text (NUL bytes in the header: UTF-16 without a byte order mark?)")
    if why:
        raise ValueError(f"{path}: {why}; save it as UTF-8 (e.g. from Excel: CSV UTF-8)")
    return table


def _unparsable(exc: pd.errors.ParserError) -> str:
    """pandas' reason, on one line; a ragged row as ``line N has K fields, the header H``."""
    text = " ".join(str(exc).split()).removeprefix("Error tokenizing data. C error: ")
    ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if ragged:
        expected, line, saw = ragged.groups()
        return (f"line {line} has {saw} fields, the header {expected}; quote a value that "
                "holds the separator")
    return text


def _not_utf8(path: Path) -> str:
    """Where the bytes of ``path`` (gzip-compressed when named ``.gz``) stop being UTF-8."""
    with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as file:
        data = file.read()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "not UTF-8 text but UTF-16 (it starts with a UTF-16 byte order mark)"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}, line {line})"
    return "not UTF-8 text"


def _escape_reason(rel: str, root_real: str) -> tuple[str | None, str | None]:
    """(absolute path, None) when ``rel`` is a file under the root, else (None, reason)."""
    if not rel or rel.strip() == "":
        return None, "empty path"
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        return None, "absolute path (paths must be relative to the data root)"
    real = os.path.realpath(os.path.join(root_real, rel))
    if not real.startswith(root_real + os.sep):
        return None, "outside the data root (.. or a symbolic link out)"
    if not os.path.exists(real):
        return None, "missing file"
    if not os.path.isfile(real):
        return None, "not a file"
    return real, None


def resolve_under(root: Path, rel_paths: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Resolve paths relative to ``root``; refuse those that escape it or do not exist.

    Returns
    -------
    paths : Series of str (absolute, symlinks resolved) or None, same index as ``rel_paths``
    reasons : Series of str or None (None: usable)
    """
    root_real = os.path.realpath(root)
    text = rel_paths.astype("string").fillna("")
    pairs = [_escape_reason(rel, root_real) for rel in text]
    paths = pd.Series([p for p, _ in pairs], index=rel_paths.index, dtype="object")
    reasons = pd.Series([r for _, r in pairs], index=rel_paths.index, dtype="object")
    return paths, reasons


def list_images(folder: Path, root: Path) -> list[str]:
    """Image files under ``folder`` (recursive, sorted), as paths relative to ``root``.

    Hidden files and other suffixes are ignored (they are not images of the data set).
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


def parse_labels(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """0/1 labels from 0/1, true/false, yes/no (any case); other values are not guessed.

    Returns the labels (float with NaN where unparseable) and a mask of unparseable rows.
    """
    text = values.astype("string").str.strip().str.lower()
    mapping = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1, "no": 0, "yes": 1}
    labels = text.map(mapping).astype(float)
    return labels, labels.isna()


def finish_index(frame: pd.DataFrame) -> pd.DataFrame:
    """Contract order and types: image_id (str), label (int8), patient_id (string), source."""
    rest = [c for c in frame.columns if c not in INDEX_COLUMNS]
    out = frame[INDEX_COLUMNS + rest].reset_index(drop=True)
    out["image_id"] = out["image_id"].astype(str)
    out["label"] = out["label"].astype(np.int8)
    out["patient_id"] = out["patient_id"].astype("string")
    out["source"] = out["source"].astype(str)
    return out
