"""The grid's flags: which (scheme, method) rows tell nothing, and why (their ``warning``).

Three sources, each of which keeps the pair from being recommended
(:func:`biaslab.fairness.recommend.choose` skips the ``degenerate`` rows, and a row not
applicable has no figures):

- evaluate's own check of the test decisions (:func:`degenerate_reasons`): constant decisions
  or scores, an AUC interval containing 0.5;
- train's check of each model (``metrics/health``: e.g. the same validation accuracy every
  epoch), over the training seeds (:func:`seed_flags`, :func:`add_training_flags`);
- postprocess's methods it could not fit (``metrics/thresholds``: e.g. a group with one class
  in validation), each a row saying why (:func:`seed_thresholds`, :func:`add_not_applicable`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def degenerate_reasons(test: pd.DataFrame, figures: dict) -> str:
    """Why one (scheme, method)'s test decisions tell nothing about the image, or "".

    A model is degenerate on the test split when its decisions are constant, its scores are
    constant, or the bootstrap interval of its AUC contains 0.5 (it does not tell the classes
    apart better than chance). Its gaps then compare nothing: DI is 1 or 0/0 whatever the
    groups. ``figures`` holds ``auc``, ``auc_lo``, ``auc_hi`` (absent or NaN: not checked).
    """
    reasons = []
    decisions = test["decision"]
    if decisions.nunique() == 1:
        reasons.append(f"constant decisions on the test split (all {decisions.iloc[0]})")
    if "score" in test.columns and test["score"].nunique() == 1:
        reasons.append(f"constant scores on the test split ({test['score'].iloc[0]:.4g})")
    auc, lo, hi = (figures.get(k, np.nan) for k in ("auc", "auc_lo", "auc_hi"))
    if lo <= 0.5 <= hi:  # False when the interval is NaN (no scores, one class, n_boot = 0)
        reasons.append(f"AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] does not exclude chance (0.5)")
    return "; ".join(reasons)


def seed_flags(flags: Mapping[str, Mapping[int, str | None]]) -> dict[str, str | None]:
    """Each scheme's training flags over its seeds (None or a reason per seed), as one text for
    :func:`add_training_flags`: "seed 1: REASON; seed 2: REASON" (the reason alone with one
    seed), None when no seed's model was flagged."""
    return {scheme: "; ".join(v if len(by_seed) == 1 else f"seed {k}: {v}"
                              for k, v in by_seed.items() if v) or None
            for scheme, by_seed in flags.items()}


def seed_thresholds(fitted: Mapping[str, Mapping[int, dict]]) -> dict[str, dict]:
    """Each scheme's postprocess thresholds over its seeds, for :func:`add_not_applicable`: a
    method is not applicable when no seed's model could fit it (what decides it is the
    validation rows, the same for every seed); one that some seed fitted has its grid row."""
    out = {}
    for scheme, by_seed in fitted.items():
        fits = list(by_seed.values())
        out[scheme] = {method: (params if all("not_applicable" in f.get(method, {})
                                               for f in fits) else {})
                       for method, params in fits[0].items()}
    return out


def add_training_flags(grid: pd.DataFrame, flags: dict[str, str | None]) -> pd.DataFrame:
    """``grid`` with each scheme's training flag (train's check: a model that learnt nothing,
    e.g. the same validation accuracy every epoch) added to the ``warning`` of its rows."""
    grid = grid.copy()
    for scheme, reason in flags.items():
        if not reason:
            continue
        rows = grid["scheme"] == scheme
        text = f"training: {reason}"
        grid.loc[rows, "warning"] = [f"{w}; {text}" if w else text
                                     for w in grid.loc[rows, "warning"]]
        grid.loc[rows, "degenerate"] = True
    return grid


def add_not_applicable(grid: pd.DataFrame, thresholds: dict[str, dict]) -> pd.DataFrame:
    """``grid`` with a row for each (scheme, method) that postprocess could not fit.

    ``thresholds`` is scheme -> its ``metrics/thresholds/SCHEME.json``, where a skipped method
    reads ``{"not_applicable": REASON}`` (e.g. a group with one class in validation). Its row
    has every figure missing, ``warning`` "not applicable: REASON", is on no Pareto front and
    is never recommended; rows keep the order of the schemes and of each scheme's methods.
    """
    rows = [{"scheme": scheme, "method": method, "degenerate": False, "pareto": False,
             "recommended": False, "warning": f"not applicable: {p['not_applicable']}"}
            for scheme, fitted in thresholds.items() for method, p in fitted.items()
            if "not_applicable" in p]
    if not rows:
        return grid
    order = {(s, m): i for i, (s, m) in enumerate(
        (s, m) for s, fitted in thresholds.items() for m in fitted)}
    grid = pd.concat([grid, pd.DataFrame(rows)], ignore_index=True)
    pairs = zip(grid["scheme"], grid["method"], strict=True)
    rank = [order.get(pair, len(order)) for pair in pairs]
    return grid.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)
