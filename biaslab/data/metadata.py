"""Metadata normalisation: sex to M/F, age to years plus ``age_group``, patient ids as strings.

Sources spell metadata in many ways (``M``, ``male``, ``Homme``; ``57``, ``057Y``, ``57 years``).
Each normaliser maps what it can recognise and reports the rest, row by row, in an ``issues``
table instead of guessing: an unparseable value becomes missing (``<NA>``), never a default.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ISSUE_COLUMNS = ["table_row", "column", "value", "reason"]

# spellings seen in public datasets (English, French, Spanish, German), compared lower-cased
_SEX = {
    "M": ("m", "male", "man", "men", "boy", "masculin", "masculine", "homme", "h", "hombre",
          "masculino", "männlich", "maennlich"),
    "F": ("f", "female", "woman", "women", "girl", "feminin", "féminin", "feminine", "femme",
          "mujer", "femenino", "weiblich", "w"),
}
_SEX_MAP = {spelling: code for code, spellings in _SEX.items() for spelling in spellings}
# DICOM age strings (e.g. 057Y, 006M): unit letter -> years
_AGE_UNITS = {"y": 1.0, "m": 1 / 12, "w": 7 / 365.25, "d": 1 / 365.25}
MAX_AGE = 120.0  # older is a data-entry error (NIH has ages such as 413), reported not kept


def empty_issues() -> pd.DataFrame:
    """An issues table with no row (the shape every normaliser returns)."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in ISSUE_COLUMNS})


def _issues(table_row, column: str, values, reason: str) -> pd.DataFrame:
    return pd.DataFrame({
        "table_row": np.asarray(table_row), "column": column,
        "value": pd.Series(values, dtype="object").astype(str).to_numpy(), "reason": reason,
    }, columns=ISSUE_COLUMNS)


def normalise_sex(values: pd.Series, column: str = "sex") -> tuple[pd.Series, pd.DataFrame]:
    """Map sex spellings to ``M``/``F`` (string dtype); blanks become ``<NA>`` silently.

    Returns
    -------
    sex : Series of string dtype, same index as ``values``
    issues : DataFrame (``table_row``, ``column``, ``value``, ``reason``) of unrecognised values
    """
    text = values.astype("string").str.strip()
    blank = text.isna() | (text == "")
    sex = text.str.lower().map(_SEX_MAP).astype("string")
    bad = sex.isna() & ~blank
    issues = _issues(values.index[bad], column, values[bad],
                     "unrecognised sex (expected M/F, male/female, ...)")
    return sex, issues


def normalise_age(values: pd.Series, column: str = "age") -> tuple[pd.Series, pd.DataFrame]:
    """Parse ages to years (float): ``57``, ``57.5``, ``57 years``, DICOM ``057Y``/``006M``.

    Values that do not parse become NaN, reported as ``unparseable``; numbers that parse but
    are negative (``-5``) or above ``MAX_AGE`` become NaN, reported as ``implausible``.
    """
    text = values.astype("string").str.strip().str.lower()
    blank = text.isna() | (text == "")
    # the sign is parsed so that -5 is reported as an implausible age, not as text
    parts = text.str.extract(r"^(?P<num>[-+]?\d+(?:\.\d*)?)\s*(?P<unit>[ymwd]|years?)?$")
    number = pd.to_numeric(parts["num"], errors="coerce")
    unit = parts["unit"].fillna("y").str[0].map(_AGE_UNITS).astype(float)
    age = (number * unit).astype(float)
    unparsed = age.isna() & ~blank
    implausible = age.notna() & ((age < 0) | (age > MAX_AGE))
    issues = pd.concat([
        _issues(values.index[unparsed], column, values[unparsed], "unparseable age"),
        _issues(values.index[implausible], column, values[implausible],
                f"implausible age (outside 0..{MAX_AGE:g} years)"),
    ], ignore_index=True)
    return age.mask(implausible), issues


def age_groups(age: pd.Series, bins: list[float]) -> pd.Series:
    """Bin ages at the cut points ``bins`` (e.g. [40, 60, 80] -> <40, 40-59, 60-79, 80+).

    With whole-number cuts the labels read as whole years (``40-59``); a missing age stays
    ``<NA>``.
    """
    edges = [-np.inf, *bins, np.inf]
    whole = all(float(b).is_integer() for b in bins)

    def label(lo, hi):
        if lo == -np.inf:
            return f"<{hi:g}"
        if hi == np.inf:
            return f"{lo:g}+"
        return f"{lo:g}-{hi - 1:g}" if whole else f"{lo:g}-{hi:g}"

    labels = [label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    groups = pd.cut(age, edges, right=False, labels=labels)
    return groups.astype("string")


def normalise_metadata(
    table: pd.DataFrame, *, sex: str | None, age: str | None, patient: str | None,
    age_bins: list[float],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normalised ``patient_id``, ``sex``, ``age``, ``age_group`` columns of a source table.

    Parameters
    ----------
    table : DataFrame
        The source's table; its index is the table row reported in the issues.
    sex, age, patient : str or None
        Column names in ``table`` (None or absent: the attribute is left out, except
        ``patient_id`` which is always present, null when unknown).
    age_bins : list of float
        Cut points of ``age_group``.

    Returns
    -------
    columns : DataFrame, same index as ``table``
    issues : DataFrame of the values that could not be normalised
    """
    out = pd.DataFrame(index=table.index)
    found = []
    if patient and patient in table:
        ids = table[patient].astype("string").str.strip()
        out["patient_id"] = ids.mask(ids == "")
    else:
        out["patient_id"] = pd.Series(pd.NA, index=table.index, dtype="string")
    if sex and sex in table:
        out["sex"], issues = normalise_sex(table[sex], sex)
        found.append(issues)
    if age and age in table:
        out["age"], issues = normalise_age(table[age], age)
        out["age_group"] = age_groups(out["age"], age_bins)
        found.append(issues)
    issues = pd.concat(found, ignore_index=True) if found else empty_issues()
    return out, issues
