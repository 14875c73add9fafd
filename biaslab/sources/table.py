"""``csv``: any table of image paths, labels and attribute columns (names configurable)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from biaslab.metadata import normalise_metadata
from biaslab.sources._files import finish_index, parse_labels, rejected_frame, resolve_under


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV metadata table as strings (nothing is guessed at reading time)."""
    if not path.is_file():
        raise FileNotFoundError(f"data.table: {path} not found")
    return pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)


def check_columns(table: pd.DataFrame, path: Path, required: dict[str, str]) -> None:
    """Fail naming the param, the column and the columns the table has."""
    for key, column in required.items():
        if column not in table.columns:
            raise ValueError(f"data.{key} = {column!r}: no such column in {path}; "
                             f"available: {list(table.columns)}")


def metadata_columns(table: pd.DataFrame, columns: dict, age_bins: list[float]):
    """Normalised patient/sex/age(+group) columns plus the extra attributes, and the issues."""
    meta, issues = normalise_metadata(table, sex=columns["sex"], age=columns["age"],
                                      patient=columns["patient"], age_bins=age_bins)
    for name in columns["attributes"]:
        if name not in meta:
            meta[name] = table[name].astype("string").replace("", pd.NA)
    return meta, issues


def load_csv_source(
    root: Path, *, table: str, path_column: str, label_column: str, columns: dict,
    views: list[str], age_bins: list[float],
):
    """Index + image paths from the table ``root/table``.

    Parameters
    ----------
    root : Path
        The data root; image paths in the table are relative to it.
    table : str
        File name of the table under ``root``.
    path_column, label_column : str
        Columns with the image path and the 0/1 label (also true/false, yes/no).
    columns : dict
        ``patient``, ``sex``, ``age`` column names (used when present) and ``attributes``
        (more columns to keep as they are, e.g. ``view``; they must exist).
    views : list of str
        Keep rows whose ``view`` column is one of these (empty: all).
    age_bins : list of float
        Cut points of ``age_group``.
    """
    path = root / table
    frame = read_table(path)
    check_columns(frame, path, {"path_column": path_column, "label_column": label_column})
    check_columns(frame, path, {f"attributes ({a})": a for a in columns["attributes"]})
    if views:
        check_columns(frame, path, {"views (column view)": "view"})
        frame = frame[frame["view"].isin(views)]
    labels, bad_label = parse_labels(frame[label_column])
    paths, reasons = resolve_under(root, frame[path_column])
    reasons = reasons.mask(reasons.isna() & bad_label,
                           "label " + frame[label_column].astype(str) + " is not 0/1")
    bad = reasons.notna()
    rejected = rejected_frame(frame.loc[bad, path_column], reasons[bad])
    frame = frame[~bad]
    meta, issues = metadata_columns(frame, columns, age_bins)
    stems = frame[path_column].str.replace(r"^.*[\\/]", "", regex=True)
    index = pd.concat([pd.DataFrame({
        "image_id": frame["image_id"] if "image_id" in frame else
        stems.str.replace(r"\.[^.]+$", "", regex=True),
        "label": labels[~bad], "source": frame[path_column],
    }), meta], axis=1)
    return finish_index(index), paths[~bad].tolist(), rejected, issues
