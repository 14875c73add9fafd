"""Atomic artifact writers and checked readers.

Every artifact is written to a temporary name in its final directory, then renamed: a stage that
fails half-way leaves either the old artifact or none, never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; renamed onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(data: bytes, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_npy(array: np.ndarray, path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def read_table(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a Parquet artifact and check that it has the ``required`` columns."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run the stage that writes it (dvc repro)")
    df = pd.read_parquet(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}"
        )
    return df


def read_rows(index: str | Path, *others: str | Path) -> pd.DataFrame:
    """The index joined on ``row`` with per-row artifacts (bias, split, weights, ...).

    Every table must hold each row once; a row missing from one of them is an error, not a
    silent drop, since the artifacts of one run always cover the same rows.
    """
    table = read_table(index, required=("row", "label"))
    for path in others:
        other = read_table(path, required=("row",))
        joined = table.merge(other, on="row", how="inner", validate="one_to_one")
        if len(joined) != len(table):
            raise ValueError(f"{path}: covers {len(other)} rows, the index {len(table)}; "
                             "rerun the stages that write them (dvc repro)")
        table = joined
    return table
