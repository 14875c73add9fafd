"""Per-row sample weights for the training split, one scheme at a time.

All schemes return weights normalised to mean 1 on the rows given (the training rows), so the
learning rate means the same thing whatever the scheme.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _inverse_frequency(keys: pd.DataFrame) -> np.ndarray:
    """w = 1 / (share of the row's cell), i.e. every cell gets the same total weight."""
    cell = keys.groupby(list(keys.columns), dropna=False).ngroup().to_numpy()
    counts = np.bincount(cell)
    return len(cell) / (len(counts) * counts[cell])


def compute_weights(
    train: pd.DataFrame, scheme: str, groups: list[str], all_rows: pd.DataFrame | None = None
) -> np.ndarray:
    """Weights of the training rows under ``scheme``.

    Schemes
    -------
    none : w = 1.
    class_balanced : w ∝ 1 / P(y): both classes weigh the same in total.
    group_balanced : w ∝ 1 / P(g): every group weighs the same in total.
    group_class_balanced : w ∝ 1 / P(g, y): every (group, class) cell weighs the same.
    reweighing : w = P(g) P(y) / P(g, y) (Kamiran & Calders 2012): label and group become
        independent under the weights.

    ``g`` is the joint value of the ``groups`` columns (their intersection). When ``all_rows``
    (the whole dataset) is given, a group-based scheme fails if a group of the data has no
    training row, since no weight could make up for it.
    """
    if "label" not in train.columns:
        raise ValueError("weights: the training table has no 'label' column")
    missing = [g for g in groups if g not in train.columns]
    if missing:
        raise ValueError(
            f"weights.groups: column(s) {missing} not found; available: {list(train.columns)}"
        )
    if len(train) == 0:
        raise ValueError("weights: the training split is empty")
    if all_rows is not None and scheme != "none" and scheme != "class_balanced":
        present = set(train[groups].drop_duplicates().itertuples(index=False, name=None))
        absent = set(all_rows[groups].drop_duplicates().itertuples(index=False, name=None))
        absent -= present
        if absent:
            raise ValueError(
                f"weights.schemes: scheme {scheme!r} needs every group of {groups} in the "
                f"training split, but {sorted(absent)} has no training row"
            )
    if scheme == "none":
        w = np.ones(len(train))
    elif scheme == "class_balanced":
        w = _inverse_frequency(train[["label"]])
    elif scheme == "group_balanced":
        w = _inverse_frequency(train[groups])
    elif scheme == "group_class_balanced":
        w = _inverse_frequency(train[groups + ["label"]])
    elif scheme == "reweighing":
        g = train.groupby(groups, dropna=False).ngroup().to_numpy()
        y = train["label"].to_numpy().astype(int)
        n = len(train)
        p_g = np.bincount(g) / n
        p_y = np.bincount(y, minlength=2) / n
        p_gy = np.zeros((len(p_g), 2))
        np.add.at(p_gy, (g, y), 1.0 / n)
        w = p_g[g] * p_y[y] / p_gy[g, y]
    else:
        raise ValueError(f"weights.schemes: unknown scheme {scheme!r}")
    return w / w.mean()
