"""Which test images are explained: a fixed, seeded draw per group x outcome.

Every row gets a random key from (seed, row) alone, never from its position or from the other
rows, and each cell takes the rows with the smallest keys. So a run draws the same images
whatever the order of the table, and two models draw the same image wherever their outcomes
agree: the maps of two schemes can be set side by side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.data.group_keys import group_keys

OUTCOMES = ("TP", "FP", "TN", "FN")  # the order of the cells, and of the maps
ALL = "all"  # the group of every row when there are no group columns

_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def row_keys(rows, seed: int) -> np.ndarray:
    """A uniform key in [0, 1) per row, a function of (seed, row) only (splitmix64).

    Vectorised: no generator per row, so a test set of 100,000 images costs milliseconds.
    """
    rows = np.asarray(rows)
    if rows.size and (rows.min() < 0 or seed < 0):
        raise ValueError(f"rows and seed: expected integers >= 0, got seed {seed} and rows from "
                         f"{rows.min()}")
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point
        z = rows.astype(np.uint64) + np.uint64(seed) * _MIX[0] + _MIX[0]
        z = (z ^ (z >> np.uint64(30))) * _MIX[1]
        z = (z ^ (z >> np.uint64(27))) * _MIX[2]
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def outcomes(labels, decisions) -> np.ndarray:
    """TP, FP, TN or FN of each row (labels and decisions 0/1)."""
    y, d = np.asarray(labels), np.asarray(decisions)
    if y.shape != d.shape or not (np.isin(y, (0, 1)).all() and np.isin(d, (0, 1)).all()):
        raise ValueError(f"labels and decisions: expected as many 0/1 values, got shapes "
                         f"{y.shape} and {d.shape}")
    names = np.array(["TN", "FP", "FN", "TP"], dtype=object)
    return names[2 * y.astype(int) + d.astype(int)]


def row_groups(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The group of each row: the joint value of ``columns`` (``s=1&sex=F``), or ``all``."""
    if not columns:
        return np.full(len(table), ALL, dtype=object)
    return group_keys(table, columns, what="explain groups (s and evaluate.groups)")


def select_cells(table: pd.DataFrame, per_cell: int, seed: int) -> tuple[pd.DataFrame,
                                                                          pd.DataFrame]:
    """The explained images: up to ``per_cell`` rows of each (group, outcome) cell.

    Parameters
    ----------
    table : DataFrame
        ``row``, ``group``, ``outcome`` (one of :data:`OUTCOMES`) and any other columns, which
        are kept.
    per_cell : int
        Rows drawn per cell (fewer when the cell has fewer; 0: none).
    seed : int
        Seed of the keys (:func:`row_keys`).

    Returns
    -------
    selected : DataFrame
        The drawn rows of ``table``, ordered by group, outcome (:data:`OUTCOMES`) and key.
    cells : DataFrame
        Every group x outcome, the empty ones included: ``group``, ``outcome``, ``available``
        (test rows in the cell), ``selected``.
    """
    require_columns(table, ["row", "group", "outcome"], what="the images to explain")
    if per_cell < 0:
        raise ValueError(f"explain.per_cell: expected an integer >= 0, got {per_cell}")
    unknown = sorted(set(table["outcome"]) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"outcome: expected values among {', '.join(OUTCOMES)}, got {unknown}")
    order = table.assign(_key=row_keys(table["row"].to_numpy(), seed),
                         _outcome=table["outcome"].map(OUTCOMES.index))
    order = order.sort_values(["group", "_outcome", "_key"], kind="stable")
    selected = order.groupby(["group", "_outcome"], sort=False).head(per_cell)
    groups = sorted(table["group"].unique())
    grid = pd.MultiIndex.from_product([groups, OUTCOMES], names=["group", "outcome"])
    counts = table.groupby(["group", "outcome"]).size()
    cells = pd.DataFrame({"available": counts.reindex(grid, fill_value=0)}).reset_index()
    cells["selected"] = np.minimum(cells["available"], per_cell)
    return selected.drop(columns=["_key", "_outcome"]).reset_index(drop=True), cells


def share_sample(table: pd.DataFrame, per_group: int, seed: int) -> pd.DataFrame:
    """Up to ``per_group`` rows of each group, drawn by the same keys, whatever their outcome:
    the images the attribution share is measured on."""
    require_columns(table, ["row", "group"], what="the images of the attribution share")
    if per_group < 0:
        raise ValueError(f"explain.share_images: expected an integer >= 0, got {per_group}")
    order = table.assign(_key=row_keys(table["row"].to_numpy(), seed))
    order = order.sort_values(["group", "_key"], kind="stable")
    return order.groupby("group", sort=False).head(per_group).drop(columns="_key").reset_index(
        drop=True)


def empty_cells(cells: pd.DataFrame) -> list[str]:
    """The cells without any test image, e.g. ``['s=0 FN', 's=1 FP']``."""
    empty = cells[cells["available"] == 0]
    return [f"{g} {o}" for g, o in zip(empty["group"], empty["outcome"], strict=True)]


def empty_note(cells: pd.DataFrame) -> str:
    """The cells without any test image in one count, e.g. ``16 of 32 group x outcome cells
    have no test image``; "" when every cell has one. Which ones: the ``cells`` table
    (:func:`select_cells`), written beside the maps."""
    empty = int((cells["available"] == 0).sum())
    if not empty:
        return ""
    return (f"{empty} of {len(cells)} group x outcome cell{'s' if len(cells) != 1 else ''} "
            f"{'have' if empty != 1 else 'has'} no test image")
