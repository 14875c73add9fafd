"""NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (or ``.csv.gz``) plus ``images*/`` folders.

The table's header has a quirk: ``OriginalImage[Width,Height]`` and
``OriginalImagePixelSpacing[x,y]`` contain a comma, so a CSV reader sees two columns each (and
the 2017 file ends every row with a comma). Only the named columns below are read, by name, so
the table is used as it is shipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.data.finding_names import LABEL_PREFIX
from biaslab.data.metadata import normalise_metadata
from biaslab.data.sources._files import (
    Source,
    finish_index,
    list_images,
    read_text_table,
    rejected_frame,
    resolve_under,
)

COLUMNS = {"Image Index": "file", "Finding Labels": "findings", "Follow-up #": "follow_up",
           "Patient ID": "patient", "Patient Age": "age", "Patient Gender": "sex",
           "View Position": "view"}
NO_FINDING = "No Finding"


def find_table(root: Path) -> Path:
    """The metadata table under ``root`` (the last by name, so ``_v2020`` wins over 2017)."""
    found = sorted(root.glob("Data_Entry_2017*.csv")) + sorted(root.glob("Data_Entry_2017*.csv.gz"))
    if not found:
        raise FileNotFoundError(f"data.root: no Data_Entry_2017*.csv or .csv.gz in {root}")
    return found[-1]


def read_nih_table(path: Path) -> pd.DataFrame:
    """Read the NIH table (plain or gzipped), keeping the named columns as strings."""
    # index_col=False: rows with a trailing comma must not turn the first column into the index
    table = read_text_table(path, dtype=str, index_col=False, keep_default_na=False,
                            usecols=lambda c: c in COLUMNS)
    require_columns(table, COLUMNS, what=str(path),
                    hint=f"expected the NIH Data_Entry_2017 columns {list(COLUMNS)}")
    return table.rename(columns=COLUMNS)


def nih_index(
    table: pd.DataFrame, *, finding: str, views: list[str], age_bins: list[float],
    findings: list[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The index of the NIH table alone (no images needed): label, metadata, ``source`` = file.

    Parameters
    ----------
    table : DataFrame
        From :func:`read_nih_table`.
    finding : str
        ``"any"``: 1 for any finding, 0 for ``No Finding``; else 1 when this finding is among
        the image's ``|``-separated findings, 0 otherwise.
    views : list of str
        Keep these ``View Position`` values only (empty: all).
    age_bins : list of float
        Cut points of ``age_group``.
    findings : list of str
        Several findings (``data.findings``, validated among the 14; ``finding`` is then
        ``any``): one int8 column ``label_F`` per finding, 1 when F is among the image's
        findings, and ``label`` = 1 when any of them is (not any of the 14: an image with
        another finding only is 0). Empty: one label, as ``finding`` says.

    Returns
    -------
    index : DataFrame
        ``image_id``, ``label``, ``patient_id``, ``source``, ``sex``, ``age``, ``age_group``,
        ``view``, ``follow_up`` (then ``label_F`` per finding); the DataFrame index is the
        table row.
    issues : DataFrame of unparseable metadata values
    """
    findings_of_image = table["findings"].str.split("|").map(lambda names: {
        n.strip() for n in names})
    several = pd.DataFrame({LABEL_PREFIX + f: findings_of_image.map(lambda names, f=f: f in names)
                            .astype(np.int8) for f in findings}, index=table.index)
    if len(findings):
        label = several.max(axis=1).astype(bool)
    elif finding == "any":
        label = table["findings"].str.strip() != NO_FINDING
    else:
        known = sorted(set(findings_of_image.explode()))
        if finding not in known:
            raise ValueError(f"data.finding = {finding!r} is not allowed; expected any or one "
                             f"of the findings of the table: {', '.join(known)}")
        label = findings_of_image.map(lambda names: finding in names)
    if views:
        keep = table["view"].isin(views)
        table, label, several = table[keep], label[keep], several[keep]
    meta, issues = normalise_metadata(table, sex="sex", age="age", patient="patient",
                                      age_bins=age_bins)
    index = pd.DataFrame({
        "image_id": table["file"].str.replace(r"\.[^.]+$", "", regex=True),
        "label": label.astype(np.int8), "patient_id": meta["patient_id"],
        "source": table["file"], "sex": meta["sex"], "age": meta["age"],
        "age_group": meta["age_group"], "view": table["view"].astype("string"),
        "follow_up": pd.to_numeric(table["follow_up"], errors="coerce").astype("Int64"),
    }, index=table.index)
    return pd.concat([index, several], axis=1), issues


def load_nih_source(
    root: Path, *, finding: str, views: list[str], age_bins: list[float],
    findings: list[str] = (),
) -> Source:
    """Index + image paths of NIH ChestX-ray14 under ``root``.

    ``findings``: several findings, as in :func:`nih_index`. Images are found by file name in
    every ``images*/`` folder (recursively, as in the official archives
    ``images_001/images/...``); a table row without its image is rejected.

    Returns
    -------
    Source
        With ``table_rows``: the row of the table of each image.
    """
    index, issues = nih_index(read_nih_table(find_table(root)), finding=finding, views=views,
                              age_bins=age_bins, findings=list(findings))
    located = {}
    for folder in sorted(p for p in root.glob("images*") if p.is_dir()):
        for rel in list_images(folder, root):
            located.setdefault(Path(rel).name, rel)
    rel = index["source"].map(located)
    found = rel.notna()
    paths, reasons = resolve_under(root, rel[found])  # a symlink out of the root is refused
    paths = paths.reindex(index.index)
    reasons = reasons.reindex(index.index).mask(~found, "missing file")
    bad = reasons.notna()
    rejected = rejected_frame(rel.fillna(index["source"])[bad], reasons[bad], index.index[bad])
    index = index[~bad].assign(source=rel[~bad])
    return Source(index=finish_index(index), paths=paths[~bad].tolist(), rejected=rejected,
                  issues=issues, table_rows=index.index.tolist())
