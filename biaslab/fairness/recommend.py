"""The (scheme, method) recommended, chosen on the validation split.

Choosing a pair on the test split and reporting its test figures would flatter it (the best of
several noisy figures is biased upwards). So the Pareto front of balanced accuracy against the
fairness cost, and the recommended pair, are chosen on the validation decisions (the grid's
``val.balanced_accuracy`` and ``val.fairness_cost``, see
:func:`biaslab.fairness.evaluate.evaluate_seeds`), and only reported on test.

The fairness cost is how far a gap (``evaluate.pareto_gap``) is from its ideal
(:func:`fairness_cost`). The default gap, the equalized-odds difference, is one whose ideal a
perfect classifier reaches whatever the groups' base rates; the raw disparate impact is not: when
the groups' prevalences differ, only deliberate mistakes bring it to 1 (Kleinberg et al. 2017,
Chouldechova 2017; docs: Concepts). Whatever the gap, a pair that another beats on validation
balanced accuracy while doing no worse on any error-rate gap
(:data:`biaslab.fairness.costs.ERROR_RATE_GAPS`) is never recommended (:func:`dominated_by`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.fairness.costs import ERROR_RATE_GAPS, cost_text, fairness_cost

# the pair the recommendation is compared with: the unweighted model at its own 0.5 threshold
BASELINE = ("none", "fixed")


def choose(grid: pd.DataFrame, max_accuracy_loss: float) -> pd.DataFrame:
    """``grid`` with ``pareto``, ``dominated_by`` (see :func:`dominated_by`) and ``recommended``
    chosen on validation (see :func:`recommend`) among the pairs that are not ``degenerate``: a
    model that learnt nothing is never recommended, whatever its gaps, and neither is a pair
    another beats on balanced accuracy while doing no worse on any error-rate gap. Called again
    once training's own flags are added."""
    usable = ~grid["degenerate"].fillna(False).astype(bool)
    score = grid["val.balanced_accuracy"].where(usable)
    cost = grid["val.fairness_cost"].where(usable)
    beaten = dominated_by(grid.assign(**{"val.balanced_accuracy": score,
                                         "val.fairness_cost": cost}))
    # chosen on validation, reported on test: see the module's docstring
    return grid.assign(pareto=pareto_front(score, cost), dominated_by=beaten,
                       recommended=recommend(score, cost, max_accuracy_loss,
                                             eligible=(beaten == "").to_numpy()))


def recommend(score, cost, max_loss: float, eligible=None) -> np.ndarray:
    """True for one row: among the Pareto front of ``score`` against ``cost`` (see
    :func:`pareto_front`) and the ``eligible`` rows (None: all), the lowest cost among the rows
    whose score is at least the best score of the front minus ``max_loss``; ties go to the
    first row. All False when no row qualifies.
    """
    score, cost = np.asarray(score, dtype=float), np.asarray(cost, dtype=float)
    front = pareto_front(score, cost)
    out = np.zeros(len(score), dtype=bool)
    if front.any():
        ok = front if eligible is None else front & np.asarray(eligible, dtype=bool)
        # a hair of slack: 0.90 - 0.02 must admit 0.88 despite floating point
        near = ok & (score >= score[front].max() - max_loss - 1e-12)
        if near.any():
            out[np.flatnonzero(near)[np.argmin(cost[near])]] = True
    return out


def pareto_front(score, cost) -> np.ndarray:
    """True for the rows no other row dominates (score >= and cost <=, one of them strictly).

    Rows with a NaN score or cost are never on the front.
    """
    score, cost = np.asarray(score, dtype=float), np.asarray(cost, dtype=float)
    ok = ~(np.isnan(score) | np.isnan(cost))
    better_eq = (score[None, :] >= score[:, None]) & (cost[None, :] <= cost[:, None])
    strictly = (score[None, :] > score[:, None]) | (cost[None, :] < cost[:, None])
    dominated = (better_eq & strictly & ok[None, :]).any(1)
    return ok & ~dominated


def error_rate_costs(grid: pd.DataFrame) -> pd.DataFrame:
    """The validation error-rate gaps of ``grid`` (``val.ATTR.GAP``, GAP one of
    :data:`~biaslab.fairness.costs.ERROR_RATE_GAPS`), each as its :func:`fairness_cost`."""
    columns = [c for c in grid.columns
               if c.startswith("val.") and c.rpartition(".")[2] in ERROR_RATE_GAPS]
    return pd.DataFrame({c: fairness_cost(grid[c], c.rpartition(".")[2]) for c in columns},
                        index=grid.index)


def dominated_by(grid: pd.DataFrame) -> pd.Series:
    """For each pair, the pair (``scheme/method``) that beats it on validation, "" for none.

    Pair q beats pair p when q's ``val.balanced_accuracy`` is higher and q is no worse on any
    validation error-rate gap (:func:`error_rate_costs`): p gives up accuracy and buys no
    equality of errors with it, as demographic parity does on a perfect classifier whose groups
    differ in prevalence. Only a pair with both validation figures (balanced accuracy and
    ``val.fairness_cost``) can beat another; a gap missing in either pair, or a grid without the
    error-rate gaps, beats nothing. Of several, the one with the highest balanced accuracy
    (ties: the first).
    """
    score = grid["val.balanced_accuracy"].to_numpy(dtype=float)
    costs = error_rate_costs(grid).to_numpy(dtype=float)
    if costs.shape[1] == 0:
        return pd.Series("", index=grid.index, dtype=object)
    can = ~np.isnan(score) & ~np.isnan(grid["val.fairness_cost"].to_numpy(dtype=float))
    # beats[i, j]: pair j beats pair i (NaN compares False: beats nothing)
    beats = ((score[None, :] > score[:, None])
             & (costs[None, :, :] <= costs[:, None, :]).all(-1) & can[None, :])
    names = (grid["scheme"].astype(str) + "/" + grid["method"].astype(str)).to_numpy()
    best = np.argmax(np.where(beats, score[None, :], -np.inf), axis=1)
    return pd.Series(np.where(beats.any(1), names[best], ""), index=grid.index, dtype=object)


def baseline_row(grid: pd.DataFrame) -> pd.DataFrame:
    """The baseline's row: the unweighted model at its own threshold (:data:`BASELINE`, the
    seed study's model) when the grid has it, else the grid's first row."""
    mine = grid[(grid["scheme"] == BASELINE[0]) & (grid["method"] == BASELINE[1])]
    return mine.head(1) if len(mine) else grid.head(1)


def _flag(column: pd.Series) -> pd.Series:
    """A boolean column, also as read from CSV (True/False, 1/0, missing: False)."""
    return column.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


def _name(row: pd.Series) -> str:
    return f"{row['scheme']}/{row['method']}"


def _number(row: pd.Series, key: str) -> float:
    return float(pd.to_numeric(row.get(key), errors="coerce"))


def _text(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def why_recommended(grid: pd.DataFrame, gap: str, max_loss: float) -> str:
    """One sentence: why the recommended pair was chosen over the baseline
    (:func:`baseline_row`), with both pairs' validation figures; "" when none is recommended.

    ``gap`` is the grid column whose cost was traded (``s.equalized_odds_difference``) and
    ``max_loss`` ``evaluate.max_accuracy_loss``; ``grid`` needs the columns :func:`choose`
    writes (also as read back from grid.csv).
    """
    picked = grid[_flag(grid["recommended"])] if "recommended" in grid else grid.iloc[:0]
    if picked.empty:
        return ""
    pick, base = picked.iloc[0], baseline_row(grid).iloc[0]
    label = f"fairness cost {cost_text(gap)}"
    cost = pd.to_numeric(grid["val.fairness_cost"], errors="coerce")
    usable = ~_flag(grid["degenerate"]) if "degenerate" in grid else True
    best = pd.to_numeric(grid["val.balanced_accuracy"], errors="coerce")[
        usable & cost.notna()].max()
    figures = [(_number(r, "val.balanced_accuracy"), _number(r, "val.fairness_cost"))
               for r in (pick, base)]
    if _name(pick) == _name(base):
        # the pairs the front alone would have preferred (cheaper, within the loss): why not
        near = pd.to_numeric(grid["val.balanced_accuracy"], errors="coerce") >= (
            best - max_loss - 1e-12)
        beaten = grid[grid.get("dominated_by", pd.Series(index=grid.index, dtype=object))
                      .fillna("").astype(str).ne("") & (cost < figures[0][1]) & near]
        but = "".join(f"{'; except' if i else ', except'} {_name(r)}, which "
                      f"{r['dominated_by']} beats on balanced accuracy while being no worse on "
                      "any error-rate gap" for i, (_, r) in enumerate(beaten.iterrows()))
        return (f"The baseline {_name(base)} is recommended: on validation it has balanced "
                f"accuracy {_text(figures[0][0])} and {label} {_text(figures[0][1])}, and no "
                f"other pair of the Pareto front within evaluate.max_accuracy_loss = "
                f"{max_loss:g} of the best balanced accuracy ({best:.3f}) costs less{but}.")
    return (f"{_name(pick)} is recommended over the baseline {_name(base)}: on validation it "
            f"has balanced accuracy {_text(figures[0][0])} and {label} {_text(figures[0][1])}, "
            f"the baseline {_text(figures[1][0])} and {_text(figures[1][1])}; "
            f"{_baseline_reason(base, figures, best, max_loss)}.")


def _baseline_reason(base: pd.Series, figures: list, best: float, max_loss: float) -> str:
    """Why the baseline lost to the pick (``figures``: the pick's and the baseline's validation
    balanced accuracy and cost): the clause that ends :func:`why_recommended`."""
    (score, cost), (b_score, b_cost) = figures
    warning = base.get("warning")
    if _flag(pd.Series([base.get("degenerate")])).iloc[0] or (
            isinstance(warning, str) and warning.startswith("not applicable")):
        return f"the baseline is left out ({warning})"
    if np.isnan(b_score) or np.isnan(b_cost):
        return "the baseline has no validation figures to compare"
    if score > b_score and cost < b_cost:
        return "it is both more accurate and fairer"
    if b_score < best - max_loss - 1e-12:
        return (f"the baseline's balanced accuracy is more than evaluate.max_accuracy_loss = "
                f"{max_loss:g} below the best ({best:.3f})")
    if isinstance(base.get("dominated_by"), str) and base["dominated_by"]:
        return (f"{base['dominated_by']} has a higher balanced accuracy than the baseline and "
                "is no worse on any error-rate gap")
    if cost < b_cost:
        return ("it costs less at no loss of balanced accuracy" if score >= b_score else
                f"it costs less for {b_score - score:.3f} less balanced accuracy, within "
                f"evaluate.max_accuracy_loss = {max_loss:g}")
    return "the baseline is off the validation Pareto front"
