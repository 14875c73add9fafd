"""Per-group recalibration: each group's scores mapped to calibrated probabilities, fit on
validation, then thresholded at ``threshold`` (0.5: the decision a calibrated model makes).

A model can rank well in every group and still be miscalibrated differently per group: its 0.7
means a 90 % risk for one group and a 50 % risk for another. The calibration error per group
(``calibration_error`` in groups.csv, its interval included) shows it; these methods remove it
on validation:

- ``temperature`` (Guo et al. 2017, "On calibration of modern neural networks", ICML, per
  group): p = σ(z / T_g), z = logit(score), T_g > 0 minimising the group's negative
  log-likelihood on validation. One parameter per group; it keeps the order of the scores and
  leaves a 0.5 threshold's decisions as they are (z > 0 ⟺ z / T > 0), so it changes the
  calibration, not the decisions, at ``threshold: 0.5``.
- ``isotonic`` (Zadrozny and Elkan 2002, "Transforming classifier scores into accurate multiclass
  probability estimates", KDD, per group): p = f_g(score), f_g the non-decreasing function that
  minimises the squared error to the labels on validation (pool-adjacent-violators), linear
  between its steps, flat beyond them. Flexible; it needs more validation rows per group and can
  change decisions.

The decisions file's ``score`` column of these methods holds the recalibrated probability, so
that evaluate's AUC and calibration error per group are those of the recalibrated scores; the
``threshold`` column holds each row's threshold on the model's own score scale (where the
recalibrated score reaches ``threshold``), as for the other methods.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

from biaslab.fairness.thresholds._scores import (
    NotApplicable,
    check_fitted,
    check_groups,
    check_scores,
    one_class,
)

CLIP = 1e-6  # scores of exactly 0 or 1 have infinite logits


class _PerGroupCalibration:
    """Fit one calibration map per group; ŷ = 1 when the calibrated score >= ``threshold``."""

    needs_groups = True

    def __init__(self, *, threshold: float = 0.5):
        self.threshold = threshold

    def fit(self, scores, labels, groups=None):
        scores, labels = check_scores(scores, labels)
        groups = check_groups(groups, len(scores))
        if why := one_class(labels):
            raise NotApplicable(f"the fit data need both classes ({why})", type(self).__name__)
        self.params_by_group_ = {}
        for key in sorted(set(groups)):
            m = groups == key
            if why := one_class(labels[m]):
                raise NotApplicable(f"group {key} has one class in the fit data ({why}): its "
                                    "calibration cannot be fitted", type(self).__name__)
            self.params_by_group_[key] = self._fit_group(scores[m], labels[m])
        return self

    def _checked(self, scores, groups) -> tuple[np.ndarray, np.ndarray]:
        """The scores and groups, checked against what ``fit`` saw."""
        check_fitted(self, "params_by_group_")
        scores, _ = check_scores(scores)
        return scores, check_groups(groups, len(scores), self.params_by_group_)

    def calibrate(self, scores, groups=None) -> np.ndarray:
        """Each row's recalibrated probability, by its group's map."""
        scores, groups = self._checked(scores, groups)
        out = np.empty(len(scores))
        for key, params in self.params_by_group_.items():
            m = groups == key
            out[m] = self._map(params, scores[m])
        return out

    def predict(self, scores, groups=None) -> np.ndarray:
        return (self.calibrate(scores, groups) >= self.threshold).astype(np.int8)

    def threshold_of(self, scores, groups=None) -> np.ndarray:
        """Each row's threshold on the model's score scale: where its group's map reaches
        ``threshold``."""
        scores, groups = self._checked(scores, groups)
        cut = {key: self._raw_threshold(p) for key, p in self.params_by_group_.items()}
        return np.array([cut[g] for g in groups], dtype=float)

    def params_(self) -> dict:
        return {"threshold": self.threshold, "groups": self.params_by_group_}


class GroupTemperatureScaling(_PerGroupCalibration):
    """p = σ(logit(score) / T_g), T_g fitted per group on validation (Guo et al. 2017)."""

    @staticmethod
    def _fit_group(scores: np.ndarray, labels: np.ndarray) -> dict:
        z = logit(np.clip(scores, CLIP, 1 - CLIP))

        def nll(log_t: float) -> float:
            p = np.clip(expit(z / np.exp(log_t)), 1e-12, 1 - 1e-12)
            return -float(np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

        # bounded: T from 1/150 to 150; a deterministic search, no random start
        best = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded",
                               options={"xatol": 1e-6})
        return {"temperature": float(np.exp(best.x))}

    @staticmethod
    def _map(params: dict, scores: np.ndarray) -> np.ndarray:
        return expit(logit(np.clip(scores, CLIP, 1 - CLIP)) / params["temperature"])

    def _raw_threshold(self, params: dict) -> float:
        t = float(np.clip(self.threshold, CLIP, 1 - CLIP))
        return float(expit(params["temperature"] * logit(t)))


class GroupIsotonic(_PerGroupCalibration):
    """p = f_g(score), f_g isotonic regression per group on validation (Zadrozny and Elkan
    2002): the non-decreasing fit of the labels, linear between its knots, flat beyond."""

    @staticmethod
    def _fit_group(scores: np.ndarray, labels: np.ndarray) -> dict:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)
        return {"x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_]}

    @staticmethod
    def _map(params: dict, scores: np.ndarray) -> np.ndarray:
        return np.interp(scores, params["x"], params["y"])

    def _raw_threshold(self, params: dict) -> float:
        x, y = np.asarray(params["x"]), np.asarray(params["y"])
        reach = np.flatnonzero(y >= self.threshold)
        if not len(reach):
            return float("inf")  # the map never reaches it: nobody positive
        i = int(reach[0])
        if i == 0:
            return 0.0  # flat at y[0] below its first knot: everybody positive
        if y[i] == y[i - 1]:
            return float(x[i])
        return float(x[i - 1] + (self.threshold - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))
