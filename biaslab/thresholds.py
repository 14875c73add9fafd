"""Decision-threshold post-processing, scikit-learn shaped: fit on validation, predict on test.

Each post-processor's ``fit(scores, labels, groups=None)`` stores fitted attributes ending in
``_`` and returns ``self``; ``predict(scores, groups=None)`` gives 0/1 decisions; ``params_()``
gives what to save so that the decisions can be reproduced from the scores (and groups) alone.
The per-group methods (demographic parity, equal opportunity, equalized odds) live in
:mod:`biaslab.group_thresholds`; ``fixed`` and ``youden`` ignore the groups.
"""

from __future__ import annotations

import numpy as np

from biaslab.config import METHODS


def _check_scores(scores, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or np.isnan(scores).any():
        raise ValueError(f"scores: expected a 1-D array without NaN, got shape {scores.shape}")
    if labels is None:
        return scores, None
    labels = np.asarray(labels)
    if labels.shape != scores.shape:
        raise ValueError(f"labels: shape {labels.shape} does not match scores {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels: expected 0/1, got values {np.unique(labels).tolist()}")
    return scores, labels


def cut_table(scores: np.ndarray, labels: np.ndarray):
    """Every distinct cut of the scores, from "nobody positive" to "everybody positive".

    Returns ``thresholds``, ``tp``, ``fp`` of length K + 1 (K distinct scores): cut k predicts
    positive the k highest distinct scores. Its threshold (ŷ = 1 when score >= threshold) lies
    half-way between the last score kept and the next one, just above the highest score for
    k = 0 and at the lowest score for k = K.
    """
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.int64)
    last = np.r_[s[1:] != s[:-1], True]  # cut after the last copy of each distinct score
    cuts = s[last]
    tp, fp = np.r_[0, np.cumsum(y)[last]], np.r_[0, np.cumsum(1 - y)[last]]
    mid = (cuts[:-1] + cuts[1:]) / 2
    # between adjacent floats the half-way point rounds onto one of them: keep it above the
    # next lower score, or that score would be predicted positive too
    mid = np.where(mid > cuts[1:], mid, cuts[:-1])
    thresholds = np.r_[np.nextafter(cuts[0], np.inf), mid, cuts[-1]] if len(cuts) else np.r_[0.5]
    return thresholds, tp, fp


class _Threshold:
    threshold_: float

    def predict(self, scores, groups=None) -> np.ndarray:
        if not hasattr(self, "threshold_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        scores, _ = _check_scores(scores)
        return (scores >= self.threshold_).astype(np.int8)

    def params_(self) -> dict:
        return {"threshold": float(self.threshold_)}


class FixedThreshold(_Threshold):
    """ŷ = 1 when score >= ``threshold``; fit learns nothing."""

    def __init__(self, *, threshold: float = 0.5):
        self.threshold = threshold

    def fit(self, scores, labels, groups=None):
        _check_scores(scores, labels)
        self.threshold_ = float(self.threshold)
        return self


class YoudenThreshold(_Threshold):
    """The threshold maximising Youden's J = TPR - FPR, i.e. balanced accuracy, on the fit data.

    The threshold is placed half-way between the best cut's score and the next lower one, so a
    new score equal to neither falls on the side it is closest to.
    """

    def fit(self, scores, labels, groups=None):
        scores, labels = _check_scores(scores, labels)
        n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
        if n_pos == 0 or n_neg == 0:
            raise ValueError(
                "YoudenThreshold: the fit data need both classes (TPR or FPR is undefined)"
            )
        thresholds, tp, fp = cut_table(scores, labels)
        best = int(np.argmax(tp / n_pos - fp / n_neg))  # first best: "nobody positive" on ties
        self.threshold_ = float(thresholds[best])
        return self


def make_postprocessor(
    method: str, *, fixed_threshold: float = 0.5, tolerance: float = 0.0, seed: int = 0
):
    """Build the post-processor named ``method``.

    ``fixed`` and ``youden`` use one threshold for everybody; ``demographic_parity``,
    ``equal_opportunity`` and ``equalized_odds`` fit one per group (see
    :mod:`biaslab.group_thresholds`), with the constrained rates equal up to ``tolerance``.
    """
    from biaslab import group_thresholds as gt  # imports this module: import it late

    if method == "fixed":
        return FixedThreshold(threshold=fixed_threshold)
    if method == "youden":
        return YoudenThreshold()
    if method == "demographic_parity":
        return gt.DemographicParityThresholds(tolerance=tolerance)
    if method == "equal_opportunity":
        return gt.EqualOpportunityThresholds(tolerance=tolerance)
    if method == "equalized_odds":
        return gt.EqualizedOddsThresholds(tolerance=tolerance, seed=seed)
    raise ValueError(f"postprocess.methods: unknown method {method!r}; allowed: "
                     + ", ".join(METHODS))
