"""The rows of a multi-label grid (metrics/grid.csv with a ``finding`` column, see
:mod:`biaslab.fairness.findings`): the "any finding" row and the worst finding. Kept apart from
the evaluation so that what reads the grid (the report) does not import what computes it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# the grid's row of the "any finding" classifier (ŷ = 1 when any finding is called), behind the
# underdiagnosis gap (biaslab.fairness.underdiagnosis)
ANY = "any finding"


def worst_finding(grid: pd.DataFrame) -> str | None:
    """The finding (not :data:`ANY`) whose pair recommended on validation has the highest
    ``fairness_cost`` (how far its Pareto gap is from its ideal on test); a finding with no
    recommended pair is judged by its first pair. None when no finding has a cost."""
    costs = {}
    for finding, rows in grid[grid["finding"] != ANY].groupby("finding", sort=False):
        picked = rows[rows["recommended"].eq(True)] if "recommended" in rows else rows.iloc[:0]
        row = (picked if len(picked) else rows).iloc[0]
        costs[finding] = float(row.get("fairness_cost", np.nan))
    known = {f: c for f, c in costs.items() if not np.isnan(c)}
    return max(known, key=known.get) if known else None
