"""Corrections of p-values for testing many gaps at once.

A run tests many gaps (schemes x methods x attributes x gaps, each with a p-value of
:func:`biaslab.fairness.significance.permutation_pvalues`); :func:`adjust` corrects their
p-values together: Holm (1979) keeps the chance of any false rejection (family-wise error) at
most alpha under any dependence between the tests; Benjamini and Hochberg (1995) keeps the
expected share of false rejections among the rejections at most alpha (independent or
positively dependent tests), with more power.
"""

from __future__ import annotations

import numpy as np

CORRECTIONS = ("holm", "bh")


def adjust(pvalues, method: str = "holm") -> np.ndarray:
    """p-values corrected for testing many gaps at once; NaN stays NaN and is not counted.

    With the m defined p-values sorted, p_(1) <= ... <= p_(m):

    - Holm: p̃_(i) = max_{j <= i} min(1, (m - j + 1) p_(j));
    - Benjamini-Hochberg (``bh``): p̃_(i) = min_{j >= i} min(1, m p_(j) / j).

    Rejecting where p̃ <= alpha keeps the family-wise error (Holm) or the false discovery rate
    (BH) at most alpha.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"evaluate.correction: expected one of {', '.join(CORRECTIONS)}, "
                         f"got {method!r}")
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    if np.any((p[defined] < 0) | (p[defined] > 1)):
        raise ValueError("pvalues: expected values in [0, 1] or NaN")
    order = defined[np.argsort(p[defined], kind="stable")]
    m, rank = len(order), np.arange(1, len(order) + 1)
    if method == "holm":
        sorted_adj = np.maximum.accumulate(np.minimum(1, (m - rank + 1) * p[order]))
    else:
        sorted_adj = np.minimum.accumulate((m * p[order] / rank)[::-1])[::-1].clip(max=1)
    out[order] = sorted_adj
    return out
