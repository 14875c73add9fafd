"""Underdiagnosis: images with a finding that a multi-label model calls "No Finding".

Seyyed-Kalantari, Zhang, McDermott, Chen and Ghassemi (2021), "Underdiagnosis bias of
artificial intelligence algorithms applied to chest radiographs in under-served patient
populations", *Nature Medicine* 27, 2176-2182, define a group's underdiagnosis rate as the
false-positive rate of the "No Finding" label in that group: among the group's images that
carry at least one finding, the share the model calls "No Finding". A multi-label model calls
an image "No Finding" when all its K finding decisions are negative, so with

- y_any = 1 when any of the image's K labels is 1 (the index's ``label`` of a multi-label run),
- ŷ_any = 1 when any of its K decisions is 1 (:func:`any_finding_decisions`),

the underdiagnosis rate of group g is

    U(g) = P(ŷ_any = 0 | y_any = 1, g) = 1 - TPR_any(g),

the false-negative rate of the "any finding" classifier. Its gap between groups is the
"any finding" equal-opportunity difference with the sign turned (EOD = TPR(g) - TPR(ref), so
U(g) - U(ref) = -EOD, the g farthest from the reference): it has the same patient-level
bootstrap interval (the bounds swapped and negated) and the same permutation p-value, within the
strata of y (:mod:`biaslab.fairness.significance`). The rates are over images, as in the study;
the intervals resample whole patients where the index has patient ids. A positive gap: group g
is called healthy more often than the reference when it is not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns

# the grid's figure: ATTR.underdiagnosis_gap (with _lo, _hi, _p, _p_adj, _seed_sd)
GAP = "underdiagnosis_gap"
RATE = "underdiagnosis_rate"
_KEYS = ["row", "split", "method"]
_KEEP = ("scheme", "method", "seed", "set", "attribute", "group", "n", "patients", "positives",
         "insufficient")


def any_finding_decisions(decisions: pd.DataFrame) -> pd.DataFrame:
    """One multi-label decisions table (long: a row per image x finding x method) as the
    decisions of the "any finding" classifier: a row per (row, split, method).

    ``decision`` is 1 when any finding's decision is 1 (0: the image is called "No Finding"),
    ``score`` the highest finding score (for the AUC of "any finding"; absent without scores),
    ``threshold`` NaN (no single threshold decides it). With an injected bias, ``decision_s0``
    and ``decision_s1`` are combined the same way. Every image must have every finding of the
    table, once per (split, method) of the methods that every finding has.
    """
    require_columns(decisions, ["finding", *_KEYS, "decision"], what="decisions")
    findings = decisions["finding"].nunique()
    # a method postprocess could not fit for some finding has no "any finding" decision
    # either: the grid reports it not applicable (biaslab.fairness.findings.any_thresholds)
    full = decisions.groupby("method", sort=False)["finding"].nunique()
    decisions = decisions[decisions["method"].isin(full[full == findings].index)]
    counts = decisions.groupby(_KEYS, sort=False)["finding"].agg(["size", "nunique"])
    bad = counts[(counts["size"] != findings) | (counts["nunique"] != findings)]
    if len(bad):
        (row, split, method), got = bad.index[0], bad.iloc[0]
        raise ValueError(f"decisions: row {row} ({split}, {method}) has {got['size']} rows of "
                         f"{got['nunique']} findings; expected one row of each of the "
                         f"{findings} findings")
    agg = {c: "max" for c in ("decision", "decision_s0", "decision_s1", "score")
           if c in decisions.columns}
    out = decisions.groupby(_KEYS, sort=False, as_index=False).agg(agg)
    for c in agg:
        if c != "score":
            out[c] = out[c].astype(np.int8)
    out.insert(3, "threshold", np.nan)
    return out


def add_gap(grid: pd.DataFrame) -> pd.DataFrame:
    """``grid`` (evaluated on :func:`any_finding_decisions`) with each attribute's
    underdiagnosis gap, ``ATTR.underdiagnosis_gap`` = -``ATTR.equal_opportunity_difference``,
    its interval (``_lo`` = -EOD's ``_hi``, ``_hi`` = -EOD's ``_lo``), its seeds' spread and its
    p-values (the same test), and the overall ``underdiagnosis_rate`` = 1 - TPR."""
    out = grid.copy()
    eod = "equal_opportunity_difference"
    # the test set's gaps (with intervals), not validation's points
    for col in [c for c in grid.columns if c.endswith(f".{eod}") and f"{c}_lo" in grid]:
        gap = col.removesuffix(eod) + GAP
        out[gap] = -grid[col]
        out[f"{gap}_lo"], out[f"{gap}_hi"] = -grid[f"{col}_hi"], -grid[f"{col}_lo"]
        for suffix in ("_seed_sd", "_p", "_p_adj"):
            if col + suffix in grid.columns:
                out[gap + suffix] = grid[col + suffix]
    return out


def rates(per_group: pd.DataFrame) -> pd.DataFrame:
    """Each group's underdiagnosis rate with its interval, from the per-group table of the
    "any finding" evaluation (groups.csv's rows: ``tpr``, ``tpr_lo``, ``tpr_hi``,
    ``positives``, ``patients``): U = 1 - TPR, [1 - TPR_hi, 1 - TPR_lo]. ``with_finding`` is
    the group's images with a finding (the rate's denominator); a rate from too few of them
    is missing, with why (``insufficient``), never a zero-width interval."""
    out = per_group[[c for c in _KEEP if c in per_group.columns]].copy()
    out[RATE] = 1 - per_group["tpr"]
    out[f"{RATE}_lo"], out[f"{RATE}_hi"] = 1 - per_group["tpr_hi"], 1 - per_group["tpr_lo"]
    return out.rename(columns={"positives": "with_finding"})
