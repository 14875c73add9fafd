"""Atomic artifact writers and checked readers.

Every artifact is written to a temporary name in its final directory, then renamed: a stage that
fails half-way leaves either the old artifact or none, never a truncated one. The temporary name
says whose it is, ``.NAME.tmp-PID-RANDOM``, so that a run killed with SIGKILL (which no
``finally`` survives) leaves a file the next writer of NAME recognises and removes: at NIH scale
the temporary of ``pixels.npy`` is gigabytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

# .NAME.tmp-PID-RANDOM, optionally with a suffix of the writer's own (e.g. ``.raw``)
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}(\.[^.]+)*$")


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` that :func:`clean_stale_temps` recognises."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Temporary files in ``folder`` (of the artifact ``name``, or of any) whose writer is gone.

    A writer is gone when no process has its PID. A live PID is left alone even when it is
    another program reusing the number (the file then waits for the next check): a writer's file
    is never taken for stale.
    """
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return []
    stale = []
    for entry in sorted(entries):
        match = TEMP_NAME.match(entry)
        if (match and (name is None or match["name"] == name)
                and not _alive(int(match["pid"]))):
            stale.append(Path(folder) / entry)
    return stale


def clean_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove :func:`stale_temps` of ``folder``; returns the paths removed."""
    removed = stale_temps(folder, name)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; renamed onto ``path`` if the block succeeds.

    The temporaries of ``path`` left by killed runs are removed first (before this run needs
    the disk space), and the file is created with the usual mode (0666 less the umask), the
    one ``path`` gets once renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent, path.name)
    tmp = temp_path(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
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


def read_json(path: str | Path):
    """A JSON artifact; one that does not parse names the file (a truncated or foreign one)."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); rerun the stage that writes it "
                         "(dvc repro)") from None


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


def read_pixels(path: str | Path, n_rows: int) -> np.ndarray:
    """``pixels.npy`` memory-mapped, checked: uint8 images (N, H, W), one per index row.

    A file that is not a .npy (a Git LFS pointer, a truncated copy), holds another array, or
    holds the pixels of another prepare run (``N != n_rows``, the index's rows) is one error
    naming it, not an IndexError deep in a batch.
    """
    path = Path(path)
    rerun = "rerun prepare (dvc repro prepare)"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; {rerun}")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    try:  # a .npy whose header or data is cut short fails here, an .npz or a pickle above
        if magic != b"\x93NUMPY":
            raise ValueError("no .npy header")
        pixels = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc}); {rerun}") from None
    if pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise ValueError(f"{path}: a {pixels.dtype} array of shape {pixels.shape}, not uint8 "
                         f"images (N, H, W); {rerun}")
    if len(pixels) != n_rows:
        raise ValueError(f"{path}: {len(pixels)} images, the index {n_rows} rows (pixels of "
                         f"another prepare run?); {rerun}")
    return pixels
