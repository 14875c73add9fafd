"""Multi-label runs: every threshold method and every figure per finding, the p-values of all
findings corrected together, and the "any finding" row behind the underdiagnosis gap.

A multi-label run (``data.findings``) writes long predictions and decisions, one row per
(image, finding) with a ``finding`` column, and its index carries one 0/1 column per finding,
``label_<Finding>`` (``label`` itself is "any finding"). Each finding is the single-label
problem of its own label: :func:`biaslab.fairness.thresholds.findings.decide_findings` fits the
threshold methods per finding, :func:`evaluate_findings` runs
:func:`biaslab.fairness.evaluate.evaluate_seeds` per finding (patient-level intervals, the
training seeds' variance, permutation p-values, "too few cases" where a finding is rare in a
group) and adds one row per (scheme, method) for :data:`ANY`, the "any finding" classifier of
:mod:`biaslab.fairness.underdiagnosis`.

**One family of tests.** Each finding's evaluation tests its gaps (attributes x gaps x schemes
x methods); with K findings the run tests K + 1 times as many. Corrected finding by finding, the
chance of a false "significant" gap somewhere in the report would grow with K. The p-values of
every finding (and of the "any finding" row) are therefore corrected together, as one family
(:func:`correct_together`, Holm or Benjamini-Hochberg, :mod:`biaslab.fairness.corrections`):
the report's family-wise error (Holm) or false discovery rate (BH) stays at most alpha, whatever
K. The price is power: under Holm the smallest p-value must be at most alpha / m, m the number
of tests (``tests`` of :class:`FindingsEvaluation`), so a gap needs a larger effect, or more
patients, to be found than in a single-finding run.
"""

from __future__ import annotations

__all__ = ["ANY", "FindingsEvaluation", "any_thresholds", "by_finding", "correct_together",
           "evaluate_findings", "findings_headline", "reach_warning", "worst_finding"]

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from biaslab.fairness.corrections import adjust
from biaslab.fairness.evaluate import evaluate_seeds
from biaslab.fairness.finding_rows import ANY, worst_finding
from biaslab.fairness.headline import headline
from biaslab.fairness.recommend import baseline_row
from biaslab.fairness.thresholds.findings import findings_of, with_label
from biaslab.fairness.underdiagnosis import GAP, add_gap, any_finding_decisions


@dataclass(frozen=True)
class FindingsEvaluation:
    """What :func:`evaluate_findings` computes: the tables of
    :class:`biaslab.fairness.evaluate.Evaluation`, each with ``finding`` as its first column,
    and ``tests``, the number of p-values corrected together."""

    grid: pd.DataFrame
    per_seed: pd.DataFrame
    per_group: pd.DataFrame
    tests: int


def evaluate_findings(
    decisions: Mapping[str, Mapping[int, pd.DataFrame]],
    attributes: pd.DataFrame,
    groups: list[str],
    *,
    correction: str = "holm",
    **options,
) -> FindingsEvaluation:
    """Evaluate a multi-label run: each finding as a single-label run, then "any finding".

    ``decisions`` is scheme -> training seed -> long decisions (``finding`` column);
    ``attributes`` the index rows with ``label_<Finding>`` of every finding; ``groups`` and
    ``options`` as in :func:`biaslab.fairness.evaluate.evaluate_seeds`. Each finding F is
    evaluated on its rows with ``label`` = ``label_F``; the :data:`ANY` rows on
    :func:`biaslab.fairness.underdiagnosis.any_finding_decisions` with the index's own
    ``label`` (any finding), and carry the underdiagnosis gap. Every gap's p-value of every
    row is then corrected together (:func:`correct_together`).
    """
    first = next(iter(next(iter(decisions.values())).values()))
    findings = findings_of(first)
    if ANY in findings:
        raise ValueError(f"finding {ANY!r}: the name of the run's 'any finding' row; rename "
                         "that label column")
    parts = []
    for finding in findings:
        chosen = {s: {k: t[t["finding"] == finding].drop(columns="finding")
                      for k, t in by_seed.items()} for s, by_seed in decisions.items()}
        parts.append((finding, evaluate_seeds(chosen, with_label(attributes, finding), groups,
                                              correction=correction, **options)))
    combined = {s: {k: any_finding_decisions(t) for k, t in by_seed.items()}
                for s, by_seed in decisions.items()}
    parts.append((ANY, evaluate_seeds(combined, attributes, groups, correction=correction,
                                      **options)))
    grid, tests = correct_together(_stack([(f, e.grid) for f, e in parts]), correction)
    is_any = grid["finding"] == ANY
    grid = pd.concat([grid[~is_any], add_gap(grid[is_any])], ignore_index=True)
    return FindingsEvaluation(grid, _stack([(f, e.per_seed) for f, e in parts]),
                              _stack([(f, e.per_group) for f, e in parts]), tests)


def _stack(tables: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """The tables one under the other, each with its ``finding`` as the first column."""
    return pd.concat([t.assign(finding=f)[["finding", *t.columns]] for f, t in tables],
                     ignore_index=True)


def correct_together(grid: pd.DataFrame, correction: str) -> tuple[pd.DataFrame, int]:
    """``grid`` with ``_p_adj`` of every gap recomputed from all its ``_p`` together (every
    finding, scheme, method, attribute and gap: one family), and the number of p-values in
    that family (NaN ones, of gaps reported missing, are not counted). The underdiagnosis gap
    repeats the "any finding" equal-opportunity test: it is not counted twice."""
    columns = [c for c in grid.columns if c.endswith("_p") and GAP not in c]
    if not columns:
        return grid, 0
    family = grid[columns].to_numpy(dtype=float)
    adjusted = adjust(family.ravel(), correction).reshape(family.shape)
    out = grid.copy()
    for i, col in enumerate(columns):
        out[col + "_adj"] = adjusted[:, i]
    return out, int(np.count_nonzero(~np.isnan(family)))


def reach_warning(tests: int, n_perm: int, correction: str, alpha: float = 0.05) -> str:
    """Why no gap of the run can be found significant, or "": the smallest p-value that
    ``n_perm`` permutations can give is 1 / (n_perm + 1), and Holm multiplies the smallest of
    the ``tests`` p-values by ``tests`` (BH too, unless many p-values are that small): above
    ``alpha``, raise ``evaluate.n_perm`` to at least tests / alpha."""
    if not tests or not n_perm:
        return ""
    floor = tests / (n_perm + 1)
    if floor <= alpha:
        return ""
    return (f"{tests} p-values corrected together ({correction}): with evaluate.n_perm = "
            f"{n_perm} the smallest adjusted p-value is {min(1.0, floor):.3g} > {alpha:g}, "
            f"so no gap can be significant; raise evaluate.n_perm to at least "
            f"{int(np.ceil(tests / alpha))}, or judge fewer pairs, attributes or findings")


def by_finding(grid: pd.DataFrame,
               step: Callable[[str, pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """``step(finding, rows)`` applied to each finding's rows of ``grid`` (without the
    ``finding`` column), stacked again in the grid's order of findings: the single-label grid
    functions (flags, the recommendation) run per finding."""
    return _stack([(f, step(f, rows.drop(columns="finding").reset_index(drop=True)))
                   for f, rows in grid.groupby("finding", sort=False)])


def findings_headline(grid: pd.DataFrame, groups: list[str], tests: int) -> dict:
    """metrics/fairness.json of a multi-label run, short: the worst finding
    (:func:`worst_finding`) with the single-label headline of its rows
    (:func:`biaslab.fairness.headline.headline`), the number of findings and of p-values
    corrected together, and the underdiagnosis gap of the first attribute for the
    :data:`ANY` pair recommended on validation (without one, the baseline pair,
    :func:`biaslab.fairness.recommend.baseline_row`; null when missing)."""
    worst = worst_finding(grid)
    rows = grid[grid["finding"] == worst].drop(columns="finding") if worst else grid.iloc[:0]
    out = {"worst_finding": worst, "findings": int(grid["finding"].ne(ANY).groupby(
        grid["finding"]).any().sum()), "tests_corrected": tests}
    out |= headline(rows, groups) if len(rows) else {"recommended": {"pair": None}}
    rows = grid[grid["finding"] == ANY]
    picked = rows[rows["recommended"].eq(True)]
    picked = picked if len(picked) else baseline_row(rows)  # as the report's table
    column = f"{groups[0]}.{GAP}"
    value = picked[column].iloc[0] if len(picked) and column in picked else np.nan
    out[column] = None if pd.isna(value) else round(float(value), 4)
    return out


def any_thresholds(fitted: Mapping[str, dict]) -> dict:
    """The :data:`ANY` rows' thresholds for :func:`biaslab.fairness.flags.add_not_applicable`,
    from finding -> postprocess's fitted params: a method not applicable to some finding has no
    "any finding" decision either ("not_applicable": each such finding with its reason)."""
    methods = list(dict.fromkeys(m for params in fitted.values() for m in params))
    out = {}
    for method in methods:
        why = [f"{f}: {p[method]['not_applicable']}" for f, p in fitted.items()
               if "not_applicable" in p.get(method, {})]
        out[method] = {"not_applicable": "; ".join(why)} if why else {}
    return out
