"""What the file sources share: safe path resolution under the data root, listing images,
and the index columns in their contract order and types."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
INDEX_COLUMNS = ["image_id", "label", "patient_id", "source"]


def empty_rejected() -> pd.DataFrame:
    return pd.DataFrame({"path": pd.Series(dtype="object"), "reason": pd.Series(dtype="object")})


def rejected_frame(paths, reasons) -> pd.DataFrame:
    """The ``rejected`` table: ``path`` as written in the source, ``reason``."""
    out = pd.DataFrame({"path": pd.Series(paths, dtype="object").astype(str).to_numpy(),
                        "reason": pd.Series(reasons, dtype="object").to_numpy()})
    return out if len(out) else empty_rejected()


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
