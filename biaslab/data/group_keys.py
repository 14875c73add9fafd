"""Group keys: the joint value of one or more attribute columns, as readable strings.

The one way the library names a group: ``postprocess`` (per-group thresholds), ``weights``
(the cells of the group schemes), ``evaluate`` (the ``group`` column of groups.csv and the
sizes in grid.csv) and ``audit`` (the ``group`` column of its tables, without the column
names since those tables name the attribute in a column of their own).

And the unit of each row (its patient, or the image itself), with the one rule for what text
calls the units: :func:`unit_word` (patients only where the index has patient ids).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns

SEP = "&"  # joins the parts of an intersection: attribute s&sex, group s=1&sex=F
MISSING = "<NA>"  # the label of a missing value where it is its own group
PATIENTS, IMAGES, UNITS = "patients", "images", "units"  # what unit_word says
# a unit where some images have a patient id and some do not: said once where units are counted
UNITS_MEANING = "units (a patient, or an image without a patient id)"


def group_keys(
    table: pd.DataFrame, columns: list[str], *, sep: str = SEP, what: str = "groups",
    named: bool = True, missing: str | None = None,
) -> np.ndarray:
    """One key per row naming its group, e.g. ``s=1`` or, for an intersection, ``s=1&sex=F``.

    Parameters
    ----------
    table : DataFrame
        Holds the ``columns``.
    columns : list of str
        One attribute, or several whose joint value is the group (their intersection).
    sep : str
        Joins the parts of an intersection.
    what : str
        The key the columns come from (``evaluate.groups``), named in errors.
    named : bool
        Prefix each value with its column (``s=1``); False gives the values alone (``1``,
        ``1&F``), for tables that name the attribute in a column of their own.
    missing : str, optional
        None: a missing value is an error; else the label of missing values, which then form a
        group of their own (the audit counts unknown values, e.g. :data:`MISSING`).

    Returns
    -------
    ndarray of str (object dtype), one per row of ``table``.

    Raises ValueError naming the columns that are missing or hold missing values.
    """
    require_columns(table, columns, what=what)
    if not columns:
        raise ValueError(f"{what}: expected at least one attribute column")
    keys = None
    for col in columns:
        # "string" first: 1 stays "1" and a missing value stays missing whatever the dtype
        values = table[col].astype("string")
        if missing is None and values.isna().any():
            raise ValueError(f"{what}: column {col!r} has missing values; every row needs a "
                             "group")
        part = values.fillna(missing if missing is not None else "").astype(str)
        part = (col + "=" + part) if named else part
        keys = part if keys is None else keys + sep + part
    return keys.to_numpy(dtype=object)


def patient_units(table: pd.DataFrame) -> pd.Series:
    """The unit of each row: its patient, or the row itself when the patient is unknown.

    What the split keeps together and the bootstrap and permutation tests move whole.
    """
    row_unit = "row:" + table["row"].astype(str)
    if has_patient_ids(table):
        return table["patient_id"].astype("string").fillna(row_unit).astype(str)
    return row_unit


def has_patient_ids(table: pd.DataFrame) -> bool:
    """Whether some row of ``table`` has a patient id: then patients are the units."""
    return "patient_id" in table.columns and bool(table["patient_id"].notna().any())


def unit_word(table: pd.DataFrame) -> str:
    """What text calls the units of ``table`` (:func:`patient_units`): ``patients`` when every
    row has a patient id, ``images`` when none has (each image is its own unit, as on the
    digits), ``units`` when some have (:data:`UNITS_MEANING` says what one is)."""
    if not has_patient_ids(table):
        return IMAGES
    return PATIENTS if table["patient_id"].notna().all() else UNITS


def images_text(table: pd.DataFrame) -> str:
    """``1797 images``, or ``1797 images of 812 patients`` when the units are not the images
    (a stage's summary line)."""
    word = unit_word(table)
    if word == IMAGES:
        return f"{len(table)} {IMAGES}"
    units = patient_units(table).nunique()
    return f"{len(table)} {IMAGES} of {units} {UNITS_MEANING if word == UNITS else word}"
