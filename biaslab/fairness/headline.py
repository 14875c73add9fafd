"""The evaluation in brief: metrics/fairness.json (the DVC metric) and the stage's summary line,
both of the pair recommended on validation (:mod:`biaslab.fairness.recommend`). Every figure of
every pair, with its interval, is in the grid (:mod:`biaslab.fairness.evaluate`).
"""

from __future__ import annotations

import pandas as pd

from biaslab.fairness.costs import raw_gap_warning
from biaslab.fairness.recommend import baseline_row


def headline(grid: pd.DataFrame, groups: list[str]) -> dict:
    """metrics/fairness.json, the DVC metric that `dvc exp show` tabulates: a few figures of two
    (scheme, method) pairs, so that a terminal shows experiments side by side.

    ``recommended``: the pair chosen on validation (see
    :func:`biaslab.fairness.recommend.recommend`); ``baseline``: the unweighted model at its own
    0.5 threshold (``none/fixed``, the seed study's model), or the grid's first pair without it
    (:func:`biaslab.fairness.recommend.baseline_row`).
    Each has ``pair`` ("scheme/method"), balanced accuracy, flip rate and shifted-test accuracy
    (with an injected bias), for the first attribute of ``groups`` disparate impact, its excess
    over the labels' own (see :func:`biaslab.fairness.metrics.gaps`) and the equalized-odds
    difference, and ``degenerate``; a figure that grid.csv lacks is left out, a missing one is
    null. Every figure of every pair, with its interval, is in grid.csv.
    """
    first = groups[0]
    keys = ["balanced_accuracy", "flip_rate", "shifted.accuracy", f"{first}.disparate_impact",
            f"{first}.excess_disparate_impact", f"{first}.equalized_odds_difference"]
    out: dict = {}
    recommended = grid[grid["recommended"].eq(True)] if "recommended" in grid else grid.iloc[:0]
    for name, rows in (("recommended", recommended), ("baseline", baseline_row(grid))):
        if rows.empty:
            out[name] = {"pair": None}
            continue
        row = rows.iloc[0]
        figures: dict = {"pair": f"{row['scheme']}/{row['method']}"}
        for key in [k for k in keys if k in row.index]:
            figures[key] = None if pd.isna(row[key]) else round(float(row[key]), 4)
        if "degenerate" in row.index:
            figures["degenerate"] = bool(row["degenerate"])
        out[name] = figures
    return out


def summary_line(grid: pd.DataFrame, gap: str) -> str:
    """The evaluate stage's summary: the pair recommended on validation, with its test figures
    (balanced accuracy and the Pareto gap, column ``gap`` of ``grid``). NaN-safe."""
    front = int(grid["pareto"].sum())
    picked = grid[grid["recommended"].eq(True)]
    if len(picked):
        best = picked.iloc[0]
        text = (f"recommended {best['scheme']}/{best['method']} (chosen on validation): test "
                f"balanced accuracy {best['balanced_accuracy']:.3f}, {gap} {best[gap]:.3f}")
    else:
        text = "no pair recommended (balanced accuracy or fairness cost undefined on validation)"
    if grid["balanced_accuracy"].isna().all():
        text += "; balanced accuracy undefined for every pair (a class absent from test)"
    degenerate = int(grid["degenerate"].sum()) if "degenerate" in grid.columns else 0
    return (f"{len(grid)} (scheme, method) pairs, {front} on the validation Pareto front; "
            f"{text}" + (f"; {degenerate} degenerate" if degenerate else ""))


def grid_warnings(grid: pd.DataFrame, gap: str | None = None) -> list[str]:
    """What the evaluation warns of, one line each: the degenerate pairs with why, the gaps
    missing for too few positives or negatives (the same test rows for every pair: said
    once), and, given the traded ``gap`` (``ATTR.GAP``), a raw parity gap traded where the
    groups' base rates differ (:func:`biaslab.fairness.costs.raw_gap_warning`)."""
    lines = [f"{r.scheme}/{r.method}: degenerate model: {r.warning}"
             for r in grid[grid["degenerate"].eq(True)].itertuples()]
    lines += sorted({f"too few test images, gaps missing: {col[:-len('.insufficient')]}: "
                     f"{why}" for col in grid.columns if col.endswith(".insufficient")
                     for why in grid[col] if isinstance(why, str) and why})
    raw = raw_gap_warning(grid, gap) if gap else ""
    return lines + ([raw] if raw else [])
