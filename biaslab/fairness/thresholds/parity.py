"""Per-group thresholds equalising one rate: demographic parity and equal opportunity.

Fit on validation predictions, applied to test; ``fit`` and ``predict`` take the group key of
every row (:func:`biaslab.data.group_keys.group_keys`, e.g. ``s=1`` or ``s=1&sex=F``).

Both maximise the overall balanced accuracy under their constraint. Since
balanced accuracy = 1/2 + Σ_g (TP_g / P - FP_g / N) / 2, the objective is a sum over groups, so
for a given target rate every group picks its own best cut independently.
"""

from __future__ import annotations

import numpy as np

from biaslab.fairness.thresholds._scores import (
    EPS,
    GRID,
    NotApplicable,
    check_fitted,
    check_groups,
    check_scores,
    cut_table,
    one_class,
)


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

    needs_groups = True
    _name = "rate"

    def __init__(self, *, tolerance: float = 0.0):
        self.tolerance = tolerance

    def _rate(self, tp, fp, n_pos, n_neg, key):  # pragma: no cover - overridden
        raise NotImplementedError

    def fit(self, scores, labels, groups=None):
        scores, labels = check_scores(scores, labels)
        groups = check_groups(groups, len(scores))
        if why := one_class(labels):
            raise NotApplicable(f"the fit data need both classes ({why}): balanced accuracy "
                                "is undefined", type(self).__name__)
        n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
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

    def threshold_of(self, scores, groups=None) -> np.ndarray:
        """The threshold each row's score is compared with: its group's."""
        check_fitted(self, "thresholds_")
        scores, _ = check_scores(scores)
        groups = check_groups(groups, len(scores), self.thresholds_)
        return np.array([self.thresholds_[g] for g in groups], dtype=float).reshape(len(scores))

    def predict(self, scores, groups=None) -> np.ndarray:
        scores, _ = check_scores(scores)
        return (scores >= self.threshold_of(scores, groups)).astype(np.int8)

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
            raise NotApplicable(f"group {key} has no positive row in the fit data ({n_neg} "
                                "rows, all label 0): its TPR is undefined", type(self).__name__)
        # TPR is flat across cuts that add only negatives: ties resolved by the gain
        return tp / n_pos
