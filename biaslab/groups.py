"""Group keys: the joint value of one or more attribute columns, as readable strings."""

from __future__ import annotations

import numpy as np
import pandas as pd


def group_keys(table: pd.DataFrame, columns: list[str], *, sep: str = "&") -> np.ndarray:
    """One key per row naming its group, e.g. ``s=1`` or, for an intersection, ``s=1&sex=F``.

    Raises ValueError naming the columns that are missing or hold missing values.
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"groups: column(s) {missing} not found; available: "
                         f"{[c for c in table.columns if c != 'row']}")
    if not columns:
        raise ValueError("groups: expected at least one attribute column")
    parts = []
    for col in columns:
        values = table[col]
        if values.isna().any():
            raise ValueError(f"groups: column {col!r} has missing values; every row needs a group")
        parts.append(col + "=" + values.astype(str).to_numpy().astype(object))
    keys = parts[0]
    for part in parts[1:]:
        keys = keys + sep + part
    return np.asarray(keys, dtype=object)
