"""``csv``: any table of image paths, labels and attribute columns (names configurable).

Also the reader of the folder source's optional metadata table (:func:`read_csv_table`,
:func:`metadata_columns`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.data.findings import any_finding, finding_labels
from biaslab.data.metadata import normalise_metadata
from biaslab.data.sources._files import (
    Source,
    finish_index,
    parse_labels,
    read_text_table,
    rejected_frame,
    resolve_under,
)

# what to set when a column is missing, appended to the error
PATH_HINT = "set data.path_column to the table's column of image paths"
LABEL_HINT = "set data.label_column to the table's column of 0/1 labels"


def read_csv_table(path: Path) -> pd.DataFrame:
    """Read a UTF-8 CSV table of images and metadata as strings (nothing is guessed at reading
    time); its DataFrame index is the table row (0 = the first row after the header)."""
    if not path.is_file():
        raise FileNotFoundError(f"data.table: {path} not found")
    return read_text_table(path, dtype=str, keep_default_na=False, index_col=False)


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
    views: list[str], age_bins: list[float], findings: list[str] = (),
) -> Source:
    """Index + image paths from the table ``root/table``, each with its table row.

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
    findings : list of str
        Several findings (``data.findings``): the table's 0/1 columns of each, which become
        the index's ``label_F`` columns, and ``label`` = any of them
        (:func:`~biaslab.data.findings.finding_labels`: a value that is not 0/1 is an error
        naming the row and column; ``label_column`` is not read). Empty: one label, from
        ``label_column`` (a row whose label is not 0/1 is rejected).
    """
    path = root / table
    frame = read_csv_table(path)
    require_columns(frame, [path_column], what=f"{path} (data.path_column)", hint=PATH_HINT)
    if not findings:
        require_columns(frame, [label_column], what=f"{path} (data.label_column)",
                        hint=LABEL_HINT)
    require_columns(frame, columns["attributes"], what=f"{path} (data.attributes)")
    if views:
        require_columns(frame, ["view"], what=f"{path} (data.views)")
        frame = frame[frame["view"].isin(views)]
    several = pd.DataFrame(index=frame.index)
    if findings:  # the rows of other views are not read
        several = finding_labels(frame, list(findings), where=str(path))
        frame = frame.assign(**{label_column: any_finding(several).astype(str)})
    labels, bad_label = parse_labels(frame[label_column])
    paths, reasons = resolve_under(root, frame[path_column])
    reasons = reasons.mask(reasons.isna() & bad_label,
                           "label " + frame[label_column].map(_shown) + " is not 0/1")
    bad = reasons.notna()
    rejected = rejected_frame(frame.loc[bad, path_column], reasons[bad], frame.index[bad])
    frame = frame[~bad]
    meta, issues = metadata_columns(frame, columns, age_bins)
    stems = frame[path_column].str.replace(r"^.*[\\/]", "", regex=True)
    index = pd.concat([pd.DataFrame({
        "image_id": frame["image_id"] if "image_id" in frame else
        stems.str.replace(r"\.[^.]+$", "", regex=True),
        "label": labels[~bad], "source": frame[path_column],
    }), meta, several.loc[frame.index]], axis=1)
    return Source(index=finish_index(index), paths=paths[~bad].tolist(), rejected=rejected,
                  issues=issues, table_rows=frame.index.tolist())


def _shown(value) -> str:
    """A label as a rejection reason shows it: an empty one quoted, so that it can be seen."""
    text = "" if pd.isna(value) else str(value)
    return text if text.strip() else repr(text)
