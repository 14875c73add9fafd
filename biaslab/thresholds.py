"""Decision-threshold post-processing, scikit-learn shaped: fit on validation, predict on test.

Each post-processor's ``fit(scores, labels)`` stores fitted attributes ending in ``_`` and returns
``self``; ``predict(scores)`` gives 0/1 decisions; ``params_()`` gives what to save so that the
decisions can be reproduced from the scores alone.
"""

from __future__ import annotations

import numpy as np


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


class _Threshold:
    threshold_: float

    def predict(self, scores) -> np.ndarray:
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

    def fit(self, scores, labels):
        _check_scores(scores, labels)
        self.threshold_ = float(self.threshold)
        return self


class YoudenThreshold(_Threshold):
    """The threshold maximising Youden's J = TPR - FPR, i.e. balanced accuracy, on the fit data.

    The threshold is placed half-way between the best cut's score and the next lower one, so a
    new score equal to neither falls on the side it is closest to.
    """

    def fit(self, scores, labels):
        scores, labels = _check_scores(scores, labels)
        n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
        if n_pos == 0 or n_neg == 0:
            raise ValueError(
                "YoudenThreshold: the fit data need both classes (TPR or FPR is undefined)"
            )
        order = np.argsort(-scores, kind="stable")
        s, y = scores[order], labels[order]
        last = np.r_[s[1:] != s[:-1], True]  # cut after the last copy of each distinct score
        tpr = np.cumsum(y)[last] / n_pos
        fpr = np.cumsum(1 - y)[last] / n_neg
        cuts = s[last]
        j = np.r_[0.0, tpr - fpr]  # index 0: predict nobody positive
        best = int(np.argmax(j))
        if best == 0:  # nobody positive: just above the highest score
            self.threshold_ = float(np.nextafter(cuts[0], np.inf))
        elif best == len(cuts):  # everybody positive: the lowest score
            self.threshold_ = float(cuts[-1])
        else:  # positive down to cuts[best - 1], negative from cuts[best]
            mid = (cuts[best - 1] + cuts[best]) / 2
            # between adjacent floats the half-way point rounds onto one of them: keep it
            # above cuts[best], or that score would be predicted positive too
            self.threshold_ = float(mid if mid > cuts[best] else cuts[best - 1])
        return self


def make_postprocessor(method: str, *, fixed_threshold: float = 0.5):
    """Build the post-processor named ``method`` (``fixed`` or ``youden``)."""
    if method == "fixed":
        return FixedThreshold(threshold=fixed_threshold)
    if method == "youden":
        return YoudenThreshold()
    raise ValueError(f"postprocess.methods: unknown method {method!r}; allowed: fixed, youden")
