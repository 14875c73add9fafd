"""How far each gap between groups is from its ideal: the one definition that the
recommendation's fairness cost (:mod:`biaslab.fairness.recommend`), the report's and the sweep's
figures and the verdict read.

A gap is read against the value a perfect classifier (ŷ = y) would score, where the labels allow
it: the error-rate gaps (:data:`ERROR_RATE_GAPS`) and the excess over the base rates are at
their ideal for a perfect classifier whatever the groups' base rates. The raw parity gaps
(:data:`RAW_GAPS`) are not: when the groups' prevalences differ, only deliberate mistakes bring
the disparate impact to 1 (the incompatibility of calibration, parity and equal error rates
under unequal base rates: Kleinberg, Mullainathan and Raghavan 2017; Chouldechova 2017).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The ratios, at parity at 1 and compared on a log scale (DI 0.8 is as far from parity as 1.25);
# worst-group balanced accuracy is at its best at 1; the other gaps are differences, at parity 0.
RATIO_GAPS = ("disparate_impact", "base_disparate_impact", "excess_disparate_impact")
# The error-rate gaps: a perfect classifier (ŷ = y) meets each of them whatever the groups' base
# rates, so none of them asks for a deliberate mistake (Hardt et al. 2016).
ERROR_RATE_GAPS = ("equal_opportunity_difference", "average_odds_difference",
                   "equalized_odds_difference", "worst_group_balanced_accuracy")
# The raw parity gaps compare selection rates, which the labels themselves make unequal when the
# groups' base rates differ: each with its baseline, the labels' own gap (a perfect classifier's).
RAW_GAPS = {"disparate_impact": "base_disparate_impact",
            "statistical_parity_difference": "base_statistical_parity_difference"}
BEST_AT_ONE = ("worst_group_balanced_accuracy",)  # a figure, not a difference: best at 1
DEFAULT_GAP = "equalized_odds_difference"  # evaluate.pareto_gap's default (docs/concepts.md)


def fairness_cost(gap: pd.Series, metric: str) -> np.ndarray:
    """How far a gap is from its ideal, the same either side of it.

    |log x| for a ratio (:data:`RATIO_GAPS`: DI 0.8 and its mirror
    1.25 cost the same; 0 or inf cost inf), 1 - x for the worst-group balanced accuracy (its
    shortfall from a perfect classifier's), |x| for a difference.
    """
    values = gap.to_numpy(dtype=float)
    if metric in BEST_AT_ONE:
        return 1 - values
    if metric not in RATIO_GAPS:
        return np.abs(values)
    with np.errstate(divide="ignore"):
        return np.abs(np.log(values))


def cost_text(column: str) -> str:
    """The cost of a grid column in words: ``|log s.disparate_impact|``, ``|s.gap|``."""
    metric = column.rpartition(".")[2]
    if metric in BEST_AT_ONE:
        return f"1 - {column}"
    return f"|log {column}|" if metric in RATIO_GAPS else f"|{column}|"


def raw_gap_warning(grid: pd.DataFrame, gap: str) -> str:
    """Why the cost of ``gap`` (a grid column such as ``sex.disparate_impact``) misleads the
    recommendation on this run, or "".

    A raw parity gap (:data:`RAW_GAPS`: disparate impact, statistical
    parity difference) compares selection rates, which the labels themselves make unequal when
    the groups' base rates differ. Said when the test base-rate gap's bootstrap interval
    excludes parity (no interval: nothing said); a perfect classifier then pays a cost.
    """
    attr, _, name = gap.rpartition(".")
    column = f"{attr}.{RAW_GAPS[name]}" if name in RAW_GAPS else None
    needed = [column, f"{column}_lo", f"{column}_hi"]
    if column is None or not set(needed) <= set(grid.columns):
        return ""
    rows = grid[needed].apply(pd.to_numeric, errors="coerce").dropna()
    if rows.empty:
        return ""
    value, lo, hi = rows.iloc[0]
    ideal = 1.0 if name in RATIO_GAPS else 0.0
    if lo <= ideal <= hi:
        return ""
    paid = fairness_cost(pd.Series([value]), name)[0]
    return (f"evaluate.pareto_gap = {name} compares selection rates, and the groups of {attr} "
            f"differ in base rate: {column} = {value:.3g} [{lo:.3g}, {hi:.3g}] on test "
            f"excludes parity ({ideal:g}), so a perfect classifier would pay a fairness cost of "
            f"{paid:.3g} and the pairs that misclassify towards parity look fairer; "
            f"excess_{name} or an error-rate gap such as equalized_odds_difference (the "
            "default) measures only what the model adds (docs: Concepts)")
