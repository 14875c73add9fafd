"""The (scheme, method) recommended, chosen on the validation split.

Choosing a pair on the test split and reporting its test figures would flatter it (the best of
several noisy figures is biased upwards). So the Pareto front of balanced accuracy against the
fairness cost, and the recommended pair, are chosen on the validation decisions (the grid's
``val.balanced_accuracy`` and ``val.fairness_cost``, see
:func:`biaslab.fairness.evaluate.evaluate_seeds`), and only reported on test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def choose(grid: pd.DataFrame, max_accuracy_loss: float) -> pd.DataFrame:
    """``grid`` with ``pareto`` and ``recommended`` chosen on validation (see :func:`recommend`)
    among the pairs that are not ``degenerate``: a model that learnt nothing is never
    recommended, whatever its gaps. Called again once training's own flags are added."""
    usable = ~grid["degenerate"].fillna(False).astype(bool)
    score = grid["val.balanced_accuracy"].where(usable)
    cost = grid["val.fairness_cost"].where(usable)
    # chosen on validation, reported on test: see the module's docstring
    return grid.assign(pareto=pareto_front(score, cost),
                       recommended=recommend(score, cost, max_accuracy_loss))


def fairness_cost(gap: pd.Series, metric: str) -> np.ndarray:
    """How far a gap is from parity, the same either side of it: |log DI| for disparate
    impact (DI 0.8 and its mirror 1.25 cost the same; DI 0 or inf cost inf), |value| for a
    difference."""
    values = gap.to_numpy(dtype=float)
    if metric != "disparate_impact":
        return np.abs(values)
    with np.errstate(divide="ignore"):
        return np.abs(np.log(values))


def recommend(score, cost, max_loss: float) -> np.ndarray:
    """True for one row: among the Pareto front of ``score`` against ``cost`` (see
    :func:`pareto_front`), the lowest cost among the rows whose score is at least the best
    score minus ``max_loss``; ties go to the first row. All False when no row has both figures.
    """
    score, cost = np.asarray(score, dtype=float), np.asarray(cost, dtype=float)
    front = pareto_front(score, cost)
    out = np.zeros(len(score), dtype=bool)
    if front.any():
        # a hair of slack: 0.90 - 0.02 must admit 0.88 despite floating point
        near = front & (score >= score[front].max() - max_loss - 1e-12)
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
