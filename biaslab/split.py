"""Stratified, patient-grouped train/val/test split.

Rows of one patient always land in the same split. Units (a patient, or a single image when the
patient is unknown) are stratified on the chosen columns (the stratum of a patient is that of
its first image), shuffled with a seed within each stratum, and cut by the fractions, so each
split mirrors the whole on every stratum up to rounding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def _cut(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split ``n`` units into counts proportional to ``fractions`` (largest remainder)."""
    exact = fractions * n
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def stratified_split(
    table: pd.DataFrame, fractions: dict[str, float], stratify: list[str], seed: int
) -> pd.DataFrame:
    """Assign each row of ``table`` to train, val or test.

    Parameters
    ----------
    table : DataFrame
        One row per image with ``row``, the ``stratify`` columns and optionally ``patient_id``.
    fractions : dict
        ``{"train": ..., "val": ..., "test": ...}``, summing to 1.
    stratify : list of str
        Columns whose joint values define the strata, e.g. ``["label", "s"]``.
    seed : int
        Seed of the shuffle within strata.

    Returns
    -------
    DataFrame with ``row`` and ``split``.
    """
    missing = [c for c in stratify if c not in table.columns]
    if missing:
        raise ValueError(
            f"split.stratify: column(s) {missing} not found; available: {list(table.columns)}"
        )
    if "patient_id" in table.columns and table["patient_id"].notna().any():
        unit = table["patient_id"].astype("string").fillna("row:" + table["row"].astype(str))
    else:
        unit = "row:" + table["row"].astype(str)
    units = table.assign(_unit=unit.to_numpy()).drop_duplicates("_unit")
    strata = units.groupby(stratify, sort=True, dropna=False).indices if stratify else {
        (): np.arange(len(units))
    }
    frac = np.array([fractions[s] for s in SPLITS], dtype=float)
    rng = np.random.default_rng(seed)
    assigned = np.empty(len(units), dtype=object)
    for key in sorted(strata, key=str):
        members = rng.permutation(strata[key])
        counts = _cut(len(members), frac)
        assigned[members] = np.repeat(SPLITS, counts)
    split_of_unit = pd.Series(assigned, index=units["_unit"].to_numpy())
    return pd.DataFrame(
        {"row": table["row"].to_numpy(), "split": split_of_unit.loc[unit.to_numpy()].to_numpy()}
    )
