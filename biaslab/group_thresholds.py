"""Per-group decision thresholds for demographic parity, equal opportunity and equalized odds.

Fit on validation predictions, applied to test; scikit-learn shaped like
:mod:`biaslab.thresholds`, but ``fit`` and ``predict`` take the group key of every row
(:func:`biaslab.groups.group_keys`, e.g. ``s=1`` or ``s=1&sex=F``).

All three maximise the overall balanced accuracy under their constraint. Since
balanced accuracy = 1/2 + Σ_g (TP_g / P - FP_g / N) / 2, the objective is a sum over groups, so
for a given target rate every group picks its own best cut independently.
"""

from __future__ import annotations

import numpy as np

from biaslab.thresholds import _check_scores, cut_table

GRID = np.linspace(0.0, 1.0, 1001)  # candidate target rates, with every achievable rate added
EPS = 1e-12


def _check_groups(groups, n: int) -> np.ndarray:
    if groups is None:
        raise ValueError("groups: per-group thresholds need the group of every row "
                         "(postprocess.groups)")
    groups = np.asarray(groups, dtype=object)
    if groups.shape != (n,):
        raise ValueError(f"groups: expected {n} values, like scores, got shape {groups.shape}")
    return groups


def _range_max(values: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """max(values[start_j:stop_j]) for every j (every range non-empty), vectorised."""
    padded = np.r_[values, -np.inf]  # so that stop == len(values) is a valid index
    idx = np.stack([start, stop], axis=1).ravel()
    return np.maximum.reduceat(padded, idx)[::2]


def _best_cuts(rate: np.ndarray, gain: np.ndarray, targets: np.ndarray, tol: float):
    """Per target r: the best gain over cuts whose rate is within tol/2 of r, else the closest.

    ``rate`` is non-decreasing in the cut index, so the feasible cuts form a contiguous range.
    Returns (best gain per target, range start, range stop).
    """
    lo = np.searchsorted(rate, targets - tol / 2 - EPS, "left")
    hi = np.searchsorted(rate, targets + tol / 2 + EPS, "right")
    empty = lo >= hi
    # no cut within the tolerance: take the cuts of the closest achievable rate
    below, above = rate[np.clip(lo - 1, 0, None)], rate[np.clip(lo, None, len(rate) - 1)]
    near = np.where(np.abs(below - targets) <= np.abs(above - targets), below, above)
    lo = np.where(empty, np.searchsorted(rate, near, "left"), lo)
    hi = np.where(empty, np.searchsorted(rate, near, "right"), hi)
    return _range_max(gain, lo, hi), lo, hi


class _RateParity:
    """Per-group thresholds making one rate (``_rate``) equal across groups, up to a tolerance.

    For each candidate target r (a grid of 1,001 values and every rate a group can reach), each
    group g takes the cut maximising TP_g / P - FP_g / N among its cuts with |rate_g - r| <=
    tolerance / 2 (or, when none exists, the cut(s) whose rate is closest to r); the target
    with the highest total wins. Without randomisation, exact equality holds only up to the
    discreteness of each group's rates (one row, or one block of tied scores).
    """

    _name = "rate"

    def __init__(self, *, tolerance: float = 0.0):
        self.tolerance = tolerance

    def _rate(self, tp, fp, n_pos, n_neg, key):  # pragma: no cover - overridden
        raise NotImplementedError

    def fit(self, scores, labels, groups):
        scores, labels = _check_scores(scores, labels)
        groups = _check_groups(groups, len(scores))
        n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
        if n_pos == 0 or n_neg == 0:
            raise ValueError(f"{type(self).__name__}: the fit data need both classes")
        tables = {}
        for key in sorted(set(groups)):
            m = groups == key
            thresholds, tp, fp = cut_table(scores[m], labels[m])
            rate = self._rate(tp, fp, labels[m].sum(), m.sum() - labels[m].sum(), key)
            tables[key] = (thresholds, rate, tp / n_pos - fp / n_neg)
        targets = np.unique(np.r_[GRID, *[t[1] for t in tables.values()]])
        total = sum(_best_cuts(r, g, targets, self.tolerance)[0] for _, r, g in tables.values())
        best = int(np.argmax(total))
        self.target_ = float(targets[best])
        self.thresholds_, self.rates_ = {}, {}
        for key, (thresholds, rate, gain) in tables.items():
            _, lo, hi = _best_cuts(rate, gain, targets[best:best + 1], self.tolerance)
            k = lo[0] + int(np.argmax(gain[lo[0]:hi[0]]))
            self.thresholds_[key], self.rates_[key] = float(thresholds[k]), float(rate[k])
        return self

    def _lookup(self, groups, n: int, table: dict) -> np.ndarray:
        groups = _check_groups(groups, n)
        unknown = sorted(set(groups) - set(table))
        if unknown:
            raise ValueError(f"groups: {unknown} were not seen in fit; fitted groups: "
                             f"{sorted(table)}")
        return np.array([table[g] for g in groups], dtype=float).reshape(n)

    def threshold_of(self, groups) -> np.ndarray:
        """The threshold applied to each row (its group's)."""
        if not hasattr(self, "thresholds_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        groups = np.asarray(groups, dtype=object)
        return self._lookup(groups, len(groups), self.thresholds_)

    def predict(self, scores, groups) -> np.ndarray:
        if not hasattr(self, "thresholds_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        scores, _ = _check_scores(scores)
        return (scores >= self._lookup(groups, len(scores), self.thresholds_)).astype(np.int8)

    def params_(self) -> dict:
        return {"tolerance": self.tolerance, "target": self.target_,
                "groups": {k: {"threshold": self.thresholds_[k], self._name: self.rates_[k]}
                           for k in self.thresholds_}}


class DemographicParityThresholds(_RateParity):
    """Per-group thresholds with equal selection rates P(ŷ = 1 | g) (demographic parity)."""

    _name = "selection_rate"

    def _rate(self, tp, fp, n_pos, n_neg, key):
        return (tp + fp) / (n_pos + n_neg)


class EqualOpportunityThresholds(_RateParity):
    """Per-group thresholds with equal true positive rates P(ŷ = 1 | y = 1, g)."""

    _name = "tpr"

    def _rate(self, tp, fp, n_pos, n_neg, key):
        if n_pos == 0:
            raise ValueError(f"EqualOpportunityThresholds: group {key} has no positive row in "
                             "the fit data; its TPR is undefined")
        # TPR is flat across cuts that add only negatives: ties resolved by the gain
        return tp / n_pos


def _upper_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the upper convex hull of ROC points sorted by x (then y), left to right."""
    keep = np.r_[x[1:] != x[:-1], True]  # per distinct FPR, the highest TPR (last of a run)
    idx = np.flatnonzero(keep)
    hull: list[int] = []
    for i in idx:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b when it lies on or below the segment a -> i
            if (x[b] - x[a]) * (y[i] - y[a]) - (y[b] - y[a]) * (x[i] - x[a]) >= 0:
                hull.pop()
            else:
                break
        hull.append(int(i))
    return np.array(hull)


class EqualizedOddsThresholds:
    """Randomised per-group thresholds with equal TPR and FPR (Hardt, Price & Srebro 2016).

    Each group's ROC curve is replaced by its upper convex hull U_g, every point of which is
    reached by mixing two adjacent hull thresholds. All groups share one FPR b; a group whose
    hull rises above the common TPR a(b) = min_g U_g(b) (+ ``tolerance``) mixes in a random
    decision ŷ ~ Bernoulli(b), which sits at (b, b) on the ROC plane. The chosen b maximises
    the overall TPR - FPR, i.e. balanced accuracy. For a row of group g::

        with probability p_ignore:        ŷ ~ Bernoulli(b)
        otherwise: score >= t_high -> 1;  t_low <= score < t_high -> 1 w.p. p_low;  else 0

    The uniforms come from ``np.random.default_rng(seed)``, one per row in the order given, so
    the decisions are reproducible and the counterfactual scores of the same rows use the
    same draws.
    """

    def __init__(self, *, tolerance: float = 0.0, seed: int = 0):
        self.tolerance = tolerance
        self.seed = seed

    def _hulls(self, scores, labels, groups):
        hulls = {}
        for key in sorted(set(groups)):
            m = groups == key
            n_pos = labels[m].sum()
            if n_pos == 0 or n_pos == m.sum():
                raise ValueError(f"EqualizedOddsThresholds: group {key} needs both classes in "
                                 "the fit data; its TPR or FPR is undefined")
            thresholds, tp, fp = cut_table(scores[m], labels[m])
            x, y = fp / (m.sum() - n_pos), tp / n_pos
            h = _upper_hull(x, y)
            hulls[key] = (x[h], y[h], thresholds[h], n_pos)
        return hulls

    def fit(self, scores, labels, groups):
        scores, labels = _check_scores(scores, labels)
        groups = _check_groups(groups, len(scores))
        hulls = self._hulls(scores, labels, groups)
        fprs = np.unique(np.r_[GRID, *[h[0] for h in hulls.values()]])
        upper = np.stack([np.interp(fprs, hx, hy) for hx, hy, _, _ in hulls.values()])
        target = np.minimum(upper, upper.min(0) + self.tolerance)  # (G, B) TPR of each group
        n_pos = np.array([h[3] for h in hulls.values()], dtype=float)
        gain = n_pos @ target / n_pos.sum() - fprs  # overall TPR - FPR
        best = int(np.argmax(gain))
        b = float(fprs[best])
        self.fpr_, self.params_by_group_ = b, {}
        for i, (key, (hx, _, ht, _)) in enumerate(hulls.items()):
            j = int(np.clip(np.searchsorted(hx, b, "right") - 1, 0, len(hx) - 2))
            p_low = (b - hx[j]) / (hx[j + 1] - hx[j])
            u, t = upper[i, best], target[i, best]
            p_ignore = (u - t) / (u - b) if u - b > EPS else 0.0
            self.params_by_group_[key] = {
                "t_high": float(ht[j]), "t_low": float(ht[j + 1]), "p_low": float(p_low),
                "p_ignore": float(p_ignore), "p_constant": b, "tpr": float(t), "fpr": b}
        return self

    def _group_params(self, groups, n):
        if not hasattr(self, "params_by_group_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        groups = _check_groups(groups, n)
        unknown = sorted(set(groups) - set(self.params_by_group_))
        if unknown:
            raise ValueError(f"groups: {unknown} were not seen in fit; fitted groups: "
                             f"{sorted(self.params_by_group_)}")
        keys = ("t_high", "t_low", "p_low", "p_ignore", "p_constant")
        return {k: np.array([self.params_by_group_[g][k] for g in groups], dtype=float)
                for k in keys}

    def threshold_of(self, groups) -> np.ndarray:
        """The upper threshold t_high of each row's group (the rule randomises below it)."""
        groups = np.asarray(groups, dtype=object)
        return self._group_params(groups, len(groups))["t_high"]

    def predict(self, scores, groups) -> np.ndarray:
        scores, _ = _check_scores(scores)
        p = self._group_params(groups, len(scores))
        u_mix, u_ignore, u_const = np.random.default_rng(self.seed).random((3, len(scores)))
        by_threshold = (scores >= p["t_high"]) | ((scores >= p["t_low"]) & (u_mix < p["p_low"]))
        out = np.where(u_ignore < p["p_ignore"], u_const < p["p_constant"], by_threshold)
        return out.astype(np.int8)

    def params_(self) -> dict:
        return {"tolerance": self.tolerance, "seed": self.seed, "fpr": self.fpr_,
                "groups": self.params_by_group_}
