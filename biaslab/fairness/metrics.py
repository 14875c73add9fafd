"""Performance and fairness metrics per group, gaps between groups, with bootstrap intervals.

Every counting metric here is a function of the counts of (flip, y, ŷ) cells in each group, so
a bootstrap resample only needs its cell counts: resampling rows (or whole patients) within each
group costs a few array operations, not a pass over the rows (:mod:`biaslab.fairness.bootstrap`).
AUC
and calibration error join them through binned scores.

Cells: ``index = 4 * flip + 2 * y + ŷ``; ``flip`` marks a row whose decision changes when the
injected bias S is forced from 0 to 1 (the counterfactual flip rate), and is 0 when unknown.

A metric is a share of some rows of its group (TPR of the positives, FPR of the negatives, PPV
of the positive decisions, the others of all images). With fewer than ``min_cell`` such rows
it says nothing, and its interval would be a zero-width ``0.0 [0.0, 0.0]``: it is reported as
missing, with the reason, and so is every gap that needs it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from biaslab.fairness.bootstrap import (
    ECE_BINS,
    SharedDraws,
    auc_from_bins,
    binned_resamples,
    ece_from_bins,
    score_bins,
)

RATES = (
    "prevalence", "accuracy", "balanced_accuracy", "tpr", "fpr", "ppv", "selection_rate",
    "flip_rate",
)
SCORE_METRICS = ("auc", "calibration_error")  # need the scores; NaN without them
PER_GROUP = RATES + SCORE_METRICS
GAPS = (
    "disparate_impact", "statistical_parity_difference", "equal_opportunity_difference",
    "average_odds_difference", "equalized_odds_difference", "worst_group_balanced_accuracy",
    "auc_gap", "base_disparate_impact", "excess_disparate_impact",
    "base_statistical_parity_difference", "excess_statistical_parity_difference",
)
RESAMPLES = ("patient", "image")
# the rows each metric is a share of, and the per-group metrics each gap is computed from
CELLS = ("images", "positives", "negatives", "positive decisions")
NEEDS = {
    "prevalence": ("images",), "accuracy": ("images",), "selection_rate": ("images",),
    "flip_rate": ("images",), "calibration_error": ("images",), "tpr": ("positives",),
    "fpr": ("negatives",), "ppv": ("positive decisions",),
    "balanced_accuracy": ("positives", "negatives"), "auc": ("positives", "negatives"),
}
GAP_NEEDS = {
    "disparate_impact": ("selection_rate",), "statistical_parity_difference": ("selection_rate",),
    "equal_opportunity_difference": ("tpr",), "average_odds_difference": ("tpr", "fpr"),
    "equalized_odds_difference": ("tpr", "fpr"),
    "worst_group_balanced_accuracy": ("balanced_accuracy",), "auc_gap": ("auc",),
    "base_disparate_impact": ("prevalence",), "base_statistical_parity_difference": ("prevalence",),
    "excess_disparate_impact": ("selection_rate", "prevalence"),
    "excess_statistical_parity_difference": ("selection_rate", "prevalence"),
}


def _check(y, d, flip, groups) -> tuple[np.ndarray, ...]:
    y, d = np.asarray(y), np.asarray(d)
    n = len(y)
    for name, arr in (("labels", y), ("decisions", d)):
        if arr.shape != (n,) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name}: expected {n} values in {{0, 1}}, got shape {arr.shape}")
    flip = np.zeros(n, dtype=int) if flip is None else np.asarray(flip).astype(int)
    groups = np.asarray(groups)
    if flip.shape != (n,) or groups.shape != (n,):
        raise ValueError(f"flip and groups: expected {n} values each, like labels")
    if pd.isna(groups).any():
        raise ValueError("groups: missing values; every row needs a group")
    return y.astype(int), d.astype(int), flip, groups


def rates(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from cell counts of shape (..., 8). Undefined ratios (0/0) are NaN.

    accuracy = (TP + TN) / n; TPR = TP / (TP + FN); FPR = FP / (FP + TN);
    balanced accuracy = (TPR + 1 - FPR) / 2; PPV = TP / (TP + FP);
    selection rate = P(ŷ = 1) = (TP + FP) / n; prevalence = P(y = 1); flip rate = P(flip).
    """
    c = counts.reshape(*counts.shape[:-1], 2, 4).astype(float)
    flips = c[..., 1, :].sum(-1)
    tn, fp, fn, tp = np.moveaxis(c.sum(-2), -1, 0)
    n = tn + fp + fn + tp
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr, fpr = tp / (tp + fn), fp / (fp + tn)
        return {
            "n": n,
            "prevalence": (tp + fn) / n,
            "accuracy": (tp + tn) / n,
            "balanced_accuracy": (tpr + 1 - fpr) / 2,
            "tpr": tpr,
            "fpr": fpr,
            "ppv": tp / (tp + fp),
            "selection_rate": (tp + fp) / n,
            "flip_rate": flips / n,
        }


def _worst_vs_reference(diff: np.ndarray, size: np.ndarray | None = None) -> np.ndarray:
    """The entry of ``diff`` (last axis: the other groups) largest in magnitude, sign kept.

    Magnitude is ``size`` when given (|log ratio| for a ratio), else |diff|; NaN when any
    group's value is NaN (the worst group cannot be told); ties go to the first group.
    """
    size = np.abs(diff) if size is None else size
    pick = np.argmax(np.where(np.isnan(size), -np.inf, size), axis=-1)[..., None]
    out = np.take_along_axis(diff, pick, axis=-1)[..., 0]
    return np.where(np.isnan(diff).any(-1), np.nan, out)


def gaps(r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Between-group gaps from per-group rates (last axis = group, in sorted order).

    One definition for any number of groups. The reference group is the last one (S=1 for
    the injected bias); each gap compares every other group g with it and reports the one
    farthest from parity, with its sign:

    - DI = P(ŷ=1|g) / P(ŷ=1|ref), the g with the largest |log DI|;
    - SPD = P(ŷ=1|g) - P(ŷ=1|ref), EOD = TPR(g) - TPR(ref) and
      AOD = ((FPR(g) - FPR(ref)) + (TPR(g) - TPR(ref))) / 2, each the g with the largest |gap|.

    With two groups this is the seed definition, g0 against g1: DI = P(ŷ=1|S=0) / P(ŷ=1|S=1).
    A gap is NaN when a group's rate is undefined. Equalized-odds difference =
    max(TPR range, FPR range) and AUC gap = max - min AUC (NaN without ``auc``) over all
    groups; worst-group balanced accuracy = min over groups.

    DI and SPD have a baseline: the labels' own disparity, which a perfect classifier (ŷ = y)
    reproduces. ``base_*`` is the gap of the prevalences P(y=1|g) (DI and SPD with decisions =
    labels); ``excess_*`` is what the decisions add to it, per group g and then the g
    farthest from parity like the others: excess DI = DI(g) / base DI(g) (1: no more
    disparity than in the labels; a ratio like DI, so |log| picks g), excess SPD = SPD(g) -
    base SPD(g). With two groups they are the ratio and the difference of the reported gaps.
    NaN without ``prevalence``.
    """
    sel, tpr, fpr = r["selection_rate"], r["tpr"], r["fpr"]
    auc = r.get("auc", np.full(sel.shape, np.nan))
    prev = r.get("prevalence", np.full(sel.shape, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sel[..., :-1] / sel[..., -1:]
        base_ratio = prev[..., :-1] / prev[..., -1:]
        excess_ratio = ratio / base_ratio
        d_sel, d_tpr = sel[..., :-1] - sel[..., -1:], tpr[..., :-1] - tpr[..., -1:]
        d_prev = prev[..., :-1] - prev[..., -1:]
        d_odds = ((fpr[..., :-1] - fpr[..., -1:]) + d_tpr) / 2
        eqodds = np.maximum(tpr.max(-1) - tpr.min(-1), fpr.max(-1) - fpr.min(-1))
        return {
            "disparate_impact": _worst_vs_reference(ratio, np.abs(np.log(ratio))),
            "statistical_parity_difference": _worst_vs_reference(d_sel),
            "equal_opportunity_difference": _worst_vs_reference(d_tpr),
            "average_odds_difference": _worst_vs_reference(d_odds),
            "equalized_odds_difference": eqodds,
            "worst_group_balanced_accuracy": r["balanced_accuracy"].min(-1),
            "auc_gap": auc.max(-1) - auc.min(-1),
            "base_disparate_impact": _worst_vs_reference(base_ratio, np.abs(np.log(base_ratio))),
            "excess_disparate_impact": _worst_vs_reference(excess_ratio,
                                                           np.abs(np.log(excess_ratio))),
            "base_statistical_parity_difference": _worst_vs_reference(d_prev),
            "excess_statistical_parity_difference": _worst_vs_reference(d_sel - d_prev),
        }


def _interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    if boot.shape[0] == 0:
        nan = np.full(boot.shape[1:], np.nan)
        return nan, nan
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices stay NaN
        lo, hi = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
    return lo, hi


def _score_point(y, scores, codes, n_groups, n_bins, bins) -> dict[str, np.ndarray]:
    """Exact AUC and binned ECE of each group (then of all rows, last), NaN without scores."""
    auc, ece = np.full(n_groups + 1, np.nan), np.full(n_groups + 1, np.nan)
    if scores is None:
        return {"auc": auc, "calibration_error": ece}
    coarse = bins * ECE_BINS // n_bins
    for g in range(n_groups + 1):
        m = codes == g if g < n_groups else np.ones(len(y), bool)
        if 0 < y[m].sum() < m.sum():
            auc[g] = roc_auc_score(y[m], scores[m])
        n_k = np.bincount(coarse[m], minlength=ECE_BINS)
        pos_k = np.bincount(coarse[m], weights=y[m], minlength=ECE_BINS)
        ece[g] = ece_from_bins(n_k, pos_k, np.bincount(coarse[m], weights=scores[m],
                                                       minlength=ECE_BINS))
    return {"auc": auc, "calibration_error": ece}


def _boot_rates(res: dict, with_scores: bool) -> dict[str, np.ndarray]:
    """Metrics of every resample, (n_boot, groups + 1): each group, then all (their sum);
    ``res``'s own ``auc`` when it has one (:func:`~biaslab.fairness.bootstrap.binned_resamples`)."""
    auc = res.get("auc")
    res = {k: np.concatenate([v, v.sum(1, keepdims=True)], axis=1) for k, v in res.items()
           if k != "auc"}
    out = rates(res["counts"])
    nan = np.full(out["n"].shape, np.nan)
    if auc is None and with_scores:
        auc = auc_from_bins(res["pos"], res["neg"])
    out["auc"] = auc if with_scores else nan
    out["calibration_error"] = (ece_from_bins(res["ece_n"], res["ece_pos"], res["ece_score"])
                                if with_scores else nan)
    return out


def _warn_undefined(point_r: dict, labels_g: list[str]) -> None:
    for m in ("accuracy", "balanced_accuracy", "tpr", "fpr", "selection_rate", "auc"):
        for g, value in zip(labels_g, point_r[m], strict=True):
            if np.isnan(value) and not (m == "auc" and np.isnan(point_r[m]).all()):
                warnings.warn(f"{m} is undefined for group {g} (no rows of the class it needs)",
                              stacklevel=3)


def cell_sizes(counts: np.ndarray) -> dict[str, np.ndarray]:
    """The rows each metric is a share of (:data:`CELLS`), from cell counts (..., 8)."""
    tn, fp, fn, tp = np.moveaxis(counts.reshape(*counts.shape[:-1], 2, 4).sum(-2), -1, 0)
    return {"images": tn + fp + fn + tp, "positives": fn + tp, "negatives": tn + fp,
            "positive decisions": fp + tp}


def _rows_of(count: int, cell: str) -> str:
    """'4 positives', '1 positive decision'."""
    return f"{count} {cell.removesuffix('s') if count == 1 else cell}"


def _percent(share: float) -> str:
    return f"{100 * share:.3g}%"


def _reasons(causes: dict[str, list[str]], min_cell: int) -> str:
    """'a, b: 4 positives; c: 3 negatives (< evaluate.min_cell = 5)', names with equal causes
    together; "" without causes."""
    by_cause: dict[str, list[str]] = {}
    for name, cause in causes.items():
        if cause:
            by_cause.setdefault(", ".join(cause), []).append(name)
    if not by_cause:
        return ""
    text = "; ".join(f"{', '.join(names)}: {cause}" for cause, names in by_cause.items())
    return f"{text} (< evaluate.min_cell = {min_cell})"


def _units(patients, n: int) -> np.ndarray:
    """The patient of each row as codes 0..; each row its own patient without ``patients``."""
    if patients is None:
        return np.arange(n)
    patients = np.asarray(patients, dtype=object)
    if patients.shape != (n,) or pd.isna(patients).any():
        raise ValueError(f"patients: expected {n} ids without missing values, like labels "
                         "(a row of an unknown patient gets an id of its own)")
    return pd.factorize(patients)[0]


def group_report(
    labels, decisions, groups, *, flip=None, scores=None, patients=None,
    resample: str = "patient", n_boot: int = 1000, level: float = 0.95, seed: int = 0,
    name: str = "group", bins: int = 256, labelled: bool = False, min_cell: int = 5,
    shared: SharedDraws | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group metrics and between-group gaps, with percentile bootstrap intervals.

    Parameters
    ----------
    labels, decisions : array of 0/1
    groups : array
        Group of each row: a value of the attribute ``name`` (e.g. of S) or, with
        ``labelled``, a key of :func:`biaslab.data.group_keys.group_keys` (``s=1&sex=F``); at least
        two
        distinct groups. In sorted order, the last is the reference of the gaps.
    flip : array of 0/1, optional
        1 where forcing the bias S from 0 to 1 changes the decision.
    scores : array of float, optional
        P(y=1) of each row, for AUC and calibration error (NaN without them).
    patients : array, optional
        The patient of each row (None: every row is a patient of its own).
    resample : {"patient", "image"}
        Resample whole patients within their strata, or rows within their group (see
        :mod:`biaslab.fairness.bootstrap`); the same without ``patients``.
    n_boot, level, seed : bootstrap resamples (0 for none), confidence level, seed.
    name : str
        Attribute name, used in messages and in the ``group`` column (``name=value``).
    labelled : bool
        ``groups`` already are the labels of the ``group`` column (not prefixed by ``name``).
    bins : int
        Quantile bins of the scores in the bootstrap (see :mod:`biaslab.fairness.bootstrap`).
    min_cell : int
        A metric whose group has fewer of the rows it is a share of (:data:`NEEDS`) is
        missing (NaN, interval too), and so is a gap needing it in any group (:data:`GAP_NEEDS`).
    shared : SharedDraws, optional
        Patients resampled: the draws of every call on the same patients (same order),
        groups, ``n_boot`` and ``seed`` (several models on one test set), made once
        (:class:`biaslab.fairness.bootstrap.SharedDraws`). None: this call draws its own. The
        same bootstrap; intervals differ by Monte-Carlo error.

    Returns
    -------
    per_group : DataFrame
        One row per group plus ``all``: ``group``, ``n`` (images), ``patients``, ``positives``,
        ``negatives``; for each metric M of :data:`PER_GROUP`, ``M``, ``M_lo``, ``M_hi``;
        ``insufficient`` (the missing metrics and why, or "") and ``undefined`` (the metrics
        undefined in some resamples with the share of them, e.g. ``tpr 3.1%``; the interval
        is of the others).
    between : DataFrame
        One row per gap of :data:`GAPS`: ``metric``, ``value``, ``lo``, ``hi``, ``groups`` (the
        group sizes behind it, e.g. ``s=0:120;s=1:95``), ``insufficient`` (why it is missing,
        e.g. ``s=0 has 4 positives (< evaluate.min_cell = 5)``, or "") and ``undefined`` (the
        share of resamples in which it is undefined).
    """
    y, d, flip, groups = _check(labels, decisions, flip, groups)
    if resample not in RESAMPLES:
        raise ValueError(f"resample: expected one of {', '.join(RESAMPLES)}, got {resample!r}")
    units = _units(patients, len(y))
    codes, values = pd.factorize(groups, sort=True)
    if len(values) < 2:
        raise ValueError(
            f"evaluate.groups: attribute {name!r} has a single group ({list(values)}) in these "
            "rows; between-group gaps need at least two"
        )
    score_arr = None if scores is None else np.asarray(scores, dtype=float)
    if score_arr is not None and (score_arr.shape != y.shape or np.isnan(score_arr).any()):
        raise ValueError(f"scores: expected {len(y)} values without NaN, like labels")
    cells = 4 * flip + 2 * y + d
    bin_of, n_bins = (np.zeros(len(y), int), 1) if score_arr is None else score_bins(score_arr,
                                                                                      bins)
    counts = np.bincount(codes * 8 + cells, minlength=8 * len(values)).reshape(len(values), 8)
    counts = np.vstack([counts, counts.sum(0)])  # each group, then all
    draws = None
    if (shared is not None and resample == "patient" and n_boot > 0
            and len(units) > units.max(initial=-1) + 1):
        draws = shared.get(units, codes, len(values), n_boot, seed)  # repeated patients
    res = binned_resamples(codes, cells, bin_of, np.zeros(len(y)) if score_arr is None
                           else score_arr, len(values), n_bins, n_boot, seed,
                           units=units if resample == "patient" else None, draws=draws)
    labels_g = [str(v) if labelled else f"{name}={v}" for v in values]
    point = {**rates(counts), **_score_point(y, score_arr, codes, len(values), n_bins, bin_of)}
    _warn_undefined({m: v[:-1] for m, v in point.items()}, labels_g)
    boot = _boot_rates(res, score_arr is not None)
    metrics = PER_GROUP if score_arr is not None else RATES  # no scores: AUC, ECE just absent
    sizes = cell_sizes(counts)
    short = {m: np.logical_or.reduce([sizes[c] < min_cell for c in NEEDS[m]]) for m in metrics}
    for m in metrics:  # too few rows: missing, in the point and in every resample
        point[m] = np.where(short[m], np.nan, point[m])
        boot[m][:, short[m]] = np.nan
    table = _per_group_table(labels_g, counts, units, codes, sizes, point, boot, short,
                             level, min_cell)
    return table, _between(labels_g, sizes, point, boot, short, level, min_cell)


def _per_group_table(labels_g, counts, units, codes, sizes, point, boot, short, level,
                     min_cell) -> pd.DataFrame:
    n_groups = len(labels_g)
    patients = np.bincount(np.unique(units * n_groups + codes) % n_groups, minlength=n_groups)
    table = pd.DataFrame({"group": labels_g + ["all"], "n": counts.sum(1),
                          "patients": np.r_[patients, len(np.unique(units))],
                          "positives": sizes["positives"], "negatives": sizes["negatives"]})
    for m in PER_GROUP:
        lo, hi = _interval(boot[m], level)
        table[m], table[f"{m}_lo"], table[f"{m}_hi"] = point[m], lo, hi
    table["insufficient"] = [
        _reasons({m: [_rows_of(sizes[c][g], c) for c in NEEDS[m] if sizes[c][g] < min_cell]
                  for m in short}, min_cell) for g in range(n_groups + 1)]
    undefined = {m: _undefined_share(boot[m]) for m in short}
    table["undefined"] = [", ".join(f"{m} {_percent(u[g])}" for m, u in undefined.items()
                                    if u[g] > 0 and not short[m][g])
                          for g in range(n_groups + 1)]
    return table


def _undefined_share(boot: np.ndarray) -> np.ndarray:
    """Share of the resamples (axis 0) in which a value is NaN (0 without resamples)."""
    return np.isnan(boot).mean(0) if boot.shape[0] else np.zeros(boot.shape[1:])


def _between(labels_g, sizes, point, boot, short, level, min_cell) -> pd.DataFrame:
    """The gaps of :func:`gaps` between the groups (not the last, ``all``), one row each."""
    point_g = gaps({m: v[:-1] for m, v in point.items()})
    boot_g = gaps({m: v[:, :-1] for m, v in boot.items()})
    group_sizes = ";".join(f"{g}:{n}" for g, n in zip(labels_g, sizes["images"], strict=False))
    rows = []
    for m in GAPS:
        lo, hi = _interval(boot_g[m], level)
        needed = {c for k in GAP_NEEDS[m] if k in short for c in NEEDS[k]}  # none: not computed
        causes = [f"{label} has {', '.join(few)}" for g, label in enumerate(labels_g)
                  if (few := [_rows_of(sizes[c][g], c) for c in CELLS
                              if c in needed and sizes[c][g] < min_cell])]
        rows.append({
            "metric": m, "value": float(point_g[m]), "lo": float(lo), "hi": float(hi),
            "groups": group_sizes,
            "insufficient": f"{', '.join(causes)} (< evaluate.min_cell = {min_cell})"
            if causes else "",
            "undefined": float(_undefined_share(boot_g[m]) if needed and not causes else 0.0),
        })
    return pd.DataFrame(rows)
