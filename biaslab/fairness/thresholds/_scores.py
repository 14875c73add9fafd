"""Checks shared by every threshold method, the error saying that one does not apply to the
data, and the table of every cut of a score vector."""

from __future__ import annotations

import numpy as np

GRID = np.linspace(0.0, 1.0, 1001)  # candidate target rates, with every achievable rate added
EPS = 1e-12


class NotApplicable(ValueError):
    """The fit data cannot support the method: a group with one class, no group row, ...

    Not a bug and not a bad param: with other data the same call works. A caller fitting several
    methods skips this one and says why (:func:`biaslab.fairness.thresholds.decide_methods`); every
    other
    error (wrong shapes, NaN scores, an unknown method or column) still stops it. ``reason`` is
    the message without the method's name.
    """

    def __init__(self, reason: str, method: str | None = None):
        super().__init__(f"{method}: {reason}" if method else reason)
        self.reason = reason


def one_class(labels: np.ndarray) -> str:
    """Why ``labels`` (0/1) cannot define both TPR and FPR, e.g. "12 rows, all label 0"; or ""."""
    values = np.unique(labels)
    if len(values) == 2:
        return ""
    return f"{len(labels)} rows, all label {values[0]}" if len(values) else "no row"


def check_scores(scores, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    """``scores`` as a 1-D float array without NaN; ``labels``, if given, 0/1 of its shape."""
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


def check_groups(groups, n: int, fitted=None) -> np.ndarray:
    """The group key of each of ``n`` rows; with ``fitted``, every key must be one of them."""
    if groups is None:
        raise ValueError("groups: per-group thresholds need the group of every row "
                         "(postprocess.groups)")
    groups = np.asarray(groups, dtype=object)
    if groups.shape != (n,):
        raise ValueError(f"groups: expected {n} values, like scores, got shape {groups.shape}")
    if fitted is not None:
        unknown = sorted(set(groups) - set(fitted))
        if unknown:  # no row of theirs in the fit data, so no threshold: the data's doing
            raise NotApplicable(f"groups: {unknown} were not seen in fit; fitted groups: "
                                f"{sorted(fitted)}")
    return groups


def check_fitted(post, attribute: str) -> None:
    """Raise RuntimeError unless ``post`` has the fitted ``attribute``."""
    if not hasattr(post, attribute):
        raise RuntimeError(f"{type(post).__name__} is not fitted; call fit() first")


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
