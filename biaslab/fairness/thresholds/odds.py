"""Randomised per-group thresholds with equal TPR and FPR: equalized odds."""

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

RULE = ("t_high", "t_low", "p_low", "p_ignore", "p_constant")  # what a row's decision reads


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

    needs_groups = True

    def __init__(self, *, tolerance: float = 0.0, seed: int = 0):
        self.tolerance = tolerance
        self.seed = seed

    def _hulls(self, scores, labels, groups):
        if why := one_class(labels):  # no row at all, or one class overall: as the others say
            raise NotApplicable(f"the fit data need both classes ({why}): TPR and FPR are "
                                "undefined", type(self).__name__)
        hulls = {}
        for key in sorted(set(groups)):
            m = groups == key
            if why := one_class(labels[m]):
                rate = "TPR" if labels[m].sum() == 0 else "FPR"
                raise NotApplicable(f"group {key} has one class in the fit data ({why}): its "
                                    f"{rate} is undefined", type(self).__name__)
            n_pos = labels[m].sum()
            thresholds, tp, fp = cut_table(scores[m], labels[m])
            x, y = fp / (m.sum() - n_pos), tp / n_pos
            h = _upper_hull(x, y)
            hulls[key] = (x[h], y[h], thresholds[h], n_pos)
        return hulls

    def fit(self, scores, labels, groups=None):
        scores, labels = check_scores(scores, labels)
        groups = check_groups(groups, len(scores))
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

    def _rule(self, scores, groups) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The checked scores, and each row's group's ``RULE`` values."""
        check_fitted(self, "params_by_group_")
        scores, _ = check_scores(scores)
        groups = check_groups(groups, len(scores), self.params_by_group_)
        return scores, {k: np.array([self.params_by_group_[g][k] for g in groups], dtype=float)
                        for k in RULE}

    def threshold_of(self, scores, groups=None) -> np.ndarray:
        """The upper threshold t_high of each row's group (the rule randomises below it)."""
        return self._rule(scores, groups)[1]["t_high"]

    def predict(self, scores, groups=None) -> np.ndarray:
        scores, p = self._rule(scores, groups)
        u_mix, u_ignore, u_const = np.random.default_rng(self.seed).random((3, len(scores)))
        by_threshold = (scores >= p["t_high"]) | ((scores >= p["t_low"]) & (u_mix < p["p_low"]))
        out = np.where(u_ignore < p["p_ignore"], u_const < p["p_constant"], by_threshold)
        return out.astype(np.int8)

    def params_(self) -> dict:
        return {"tolerance": self.tolerance, "seed": self.seed, "fpr": self.fpr_,
                "groups": self.params_by_group_}
