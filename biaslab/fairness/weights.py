"""Per-row sample weights for the training split, one scheme at a time.

All schemes return weights normalised to mean 1 on the rows given (the training rows), so the
learning rate means the same thing whatever the scheme. ``g`` is the joint value of the
``groups`` columns (their intersection, e.g. ``s`` x ``sex``), keyed by
:func:`biaslab.data.group_keys.group_keys` (``s=1&sex=F``); an unknown value is a group of its own.
The
weights are used either in the loss or, with :func:`sample_order`, to draw the training rows (a
weighted sampler).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from biaslab.config import IN_TRAINING
from biaslab.data.columns import require_columns
from biaslab.data.group_keys import MISSING, group_keys

# schemes that balance (group, class) cells: an empty cell cannot be made up for
CELL_SCHEMES = ("group_class_balanced", "reweighing")
# schemes that need every group in the training split: the group schemes, and the in-training
# methods that use each row's group (all but jtt; biaslab.model.mitigation)
GROUP_SCHEMES = ("group_balanced", "group_class_balanced", "reweighing", "undersample",
                 "oversample", "groupdro", "adversarial", "domain_independent")


def _keys(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Group key of each row (``s=1&sex=F``); an unknown value is a group of its own."""
    return group_keys(table, columns, what="weights.groups", missing=MISSING)


def _cells(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Cell code (0..K-1, in the keys' sorted order) of each row: the joint value of
    ``columns``."""
    return pd.factorize(_keys(table, columns), sort=True)[0]


def group_codes(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Group code (0..G-1, in the sorted order of the keys ``s=1&sex=F``) of each row of
    ``table``: the joint value of ``columns``; an unknown value is a group of its own."""
    return _cells(table, columns)


def _inverse_frequency(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """w = 1 / (share of the row's cell), i.e. every cell gets the same total weight."""
    cell = _cells(table, columns)
    counts = np.bincount(cell)
    return len(cell) / (len(counts) * counts[cell])


def _reweighing(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """w = P(g) P(y) / P(g, y) (Kamiran & Calders 2012), any number of groups."""
    n = len(g)
    p_g = np.bincount(g) / n
    p_y = np.bincount(y, minlength=2) / n
    p_gy = np.zeros((len(p_g), 2))
    np.add.at(p_gy, (g, y), 1.0 / n)
    return p_g[g] * p_y[y] / p_gy[g, y]


def _resample(cell: np.ndarray, rng: np.random.Generator, down: bool) -> np.ndarray:
    """Copies of each row after sampling every cell to the smallest (down) or largest size.

    Undersampling keeps a random subset of ``min`` rows of each cell (the others get 0 copies);
    oversampling gives every row ``target // n_c`` copies and ``target % n_c`` random rows one
    more, so every cell ends with exactly ``target`` rows.
    """
    counts = np.bincount(cell)
    target = counts.min() if down else counts.max()
    copies = np.zeros(len(cell))
    for c, n_c in enumerate(counts):
        idx = np.flatnonzero(cell == c)
        copies[idx] = target // n_c
        copies[rng.choice(idx, size=target % n_c, replace=False)] += 1
    return copies


def _column(train: pd.DataFrame, column: str | None) -> np.ndarray:
    if not column:
        raise ValueError("weights.column: scheme 'column' needs the name of a metadata column "
                         f"of weights; available: {list(train.columns)}")
    require_columns(train, [column], what="weights.column")
    w = pd.to_numeric(train[column], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() == 0:
        raise ValueError(f"weights.column: column {column!r} needs finite weights >= 0, not all "
                         "0, on every training row")
    return w


def _check(train: pd.DataFrame, scheme: str, groups: list[str], all_rows) -> None:
    require_columns(train, ["label"], what="weights (the training table)")
    require_columns(train, groups, what="weights.groups")
    if len(train) == 0:
        raise ValueError("weights: the training split is empty")
    if all_rows is not None and scheme in GROUP_SCHEMES:
        absent = set(_keys(all_rows, groups)) - set(_keys(train, groups))
        if absent:
            raise ValueError(
                f"weights.schemes: scheme {scheme!r} needs every group of {groups} in the "
                f"training split, but {sorted(absent)} has no training row"
            )


def _warn_empty_cells(train: pd.DataFrame, scheme: str, groups: list[str],
                      sample_by: str) -> None:
    """Warn when a (group, class) cell has no training row: the scheme then weighs only the
    cells present, and cannot make label and group independent (under extreme bias, p0 = 0
    and p1 = 1, reweighing is a no-op)."""
    if scheme not in CELL_SCHEMES and not (
            scheme in ("undersample", "oversample") and sample_by == "group_class"):
        return
    keys = _keys(train, groups)
    present = set(zip(keys, train["label"].astype(int), strict=True))
    empty = [f"{g}&label={y}" for g in sorted(set(keys)) for y in (0, 1)
             if (g, y) not in present]
    if empty:
        warnings.warn(f"{scheme}: cell(s) {', '.join(empty)} have no training row: the weights "
                      "cannot make label and group independent", stacklevel=2)


def compute_weights(
    train: pd.DataFrame, scheme: str, groups: list[str], all_rows: pd.DataFrame | None = None,
    *, sample_by: str = "group", column: str | None = None, seed: int = 0,
) -> np.ndarray:
    """Weights of the training rows under ``scheme``, normalised to mean 1.

    Schemes
    -------
    none : w = 1.
    class_balanced : w ∝ 1 / P(y): both classes weigh the same in total.
    group_balanced : w ∝ 1 / P(g): every group weighs the same in total.
    group_class_balanced : w ∝ 1 / P(g, y): every (group, class) cell weighs the same.
    reweighing : w = P(g) P(y) / P(g, y) (Kamiran & Calders 2012): label and group become
        independent under the weights.
    undersample : every cell (``g``, or ``(g, y)`` with ``sample_by="group_class"``) keeps a
        random subset of min_c n_c rows: w = 1 kept, 0 dropped (before normalising).
    oversample : every cell is drawn up to max_c n_c rows: w = number of copies of the row.
    column : w = the metadata column ``column`` (finite, >= 0).
    groupdro, jtt, adversarial, domain_independent : w = 1: in-training methods, which change
        the objective rather than the weights (:mod:`biaslab.model.mitigation`).

    Parameters
    ----------
    train : DataFrame
        The training rows: ``label`` and the ``groups`` columns.
    all_rows : DataFrame, optional
        The whole dataset: a group scheme fails if a group of the data has no training row,
        since no weight could make up for it.
    seed : int
        Seed of the undersample / oversample draws.
    """
    _check(train, scheme, groups, all_rows)
    _warn_empty_cells(train, scheme, groups, sample_by)
    y = train["label"].to_numpy().astype(int)
    cell_cols = groups + ["label"] if sample_by == "group_class" else groups
    if scheme == "none" or scheme in IN_TRAINING:
        w = np.ones(len(train))
    elif scheme == "class_balanced":
        w = _inverse_frequency(train, ["label"])
    elif scheme == "group_balanced":
        w = _inverse_frequency(train, groups)
    elif scheme == "group_class_balanced":
        w = _inverse_frequency(train, groups + ["label"])
    elif scheme == "reweighing":
        w = _reweighing(_cells(train, groups), y)
    elif scheme in ("undersample", "oversample"):
        w = _resample(_cells(train, cell_cols), np.random.default_rng(seed),
                      down=scheme == "undersample")
    elif scheme == "column":
        w = _column(train, column)
    else:
        raise ValueError(f"weights.schemes: unknown scheme {scheme!r}")
    return w / w.mean()


def sample_order(weights, n: int, rng: np.random.Generator) -> np.ndarray:
    """Row positions of a weighted sampler's draw: ``n`` draws with replacement, P(i) ∝ w_i.

    The expected number of copies of row i is n w_i / Σ w, so training on the drawn rows with
    unit weights matches, in expectation, training on all rows with loss weights w.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or len(w) == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() == 0:
        raise ValueError("weights: the sampler needs a non-empty 1-D array of finite weights "
                         ">= 0, not all 0")
    return rng.choice(len(w), size=n, replace=True, p=w / w.sum())
