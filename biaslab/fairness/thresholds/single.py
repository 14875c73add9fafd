"""One threshold for everybody: a fixed one, or Youden's (the best balanced accuracy)."""

from __future__ import annotations

import numpy as np

from biaslab.fairness.thresholds._scores import (
    NotApplicable,
    check_fitted,
    check_scores,
    cut_table,
    one_class,
)


class _SingleThreshold:
    """ŷ = 1 when score >= ``threshold_``; the groups are accepted and ignored."""

    needs_groups = False
    threshold_: float

    def threshold_of(self, scores, groups=None) -> np.ndarray:
        """The threshold each row's score is compared with: the same for every row."""
        check_fitted(self, "threshold_")
        scores, _ = check_scores(scores)
        return np.full(len(scores), self.threshold_)

    def predict(self, scores, groups=None) -> np.ndarray:
        check_fitted(self, "threshold_")
        scores, _ = check_scores(scores)
        return (scores >= self.threshold_).astype(np.int8)

    def params_(self) -> dict:
        return {"threshold": float(self.threshold_)}


class FixedThreshold(_SingleThreshold):
    """ŷ = 1 when score >= ``threshold``; fit learns nothing."""

    def __init__(self, *, threshold: float = 0.5):
        self.threshold = threshold

    def fit(self, scores, labels, groups=None):
        check_scores(scores, labels)
        self.threshold_ = float(self.threshold)
        return self


class YoudenThreshold(_SingleThreshold):
    """The threshold maximising Youden's J = TPR - FPR, i.e. balanced accuracy, on the fit data.

    The threshold is placed half-way between the best cut's score and the next lower one, so a
    new score equal to neither falls on the side it is closest to.
    """

    def fit(self, scores, labels, groups=None):
        scores, labels = check_scores(scores, labels)
        if why := one_class(labels):
            raise NotApplicable(f"the fit data need both classes ({why}): TPR or FPR is "
                                "undefined", type(self).__name__)
        n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
        thresholds, tp, fp = cut_table(scores, labels)
        best = int(np.argmax(tp / n_pos - fp / n_neg))  # first best: "nobody positive" on ties
        self.threshold_ = float(thresholds[best])
        return self
