"""Stratified bootstrap of binned predictions: every metric from resampled cell counts.

Each row falls in one cell of its group: (score bin, flip, y, ŷ), with ``bins`` quantile bins
of the pooled scores. Resampling rows within a group (a bootstrap stratified by group, which
never leaves a group empty) is the same as drawing that group's cell counts from a multinomial
with the observed cell shares, so B resamples cost B multinomial draws over at most
``8 * bins`` occupied cells, whatever the number of rows. The counting metrics (accuracy, TPR,
...) are exact functions of the counts; AUC and calibration error are computed from the binned
scores:

- AUC = Σ_b P_b (N_<b + N_b / 2) / (P N), where P_b, N_b count positives and negatives in score
  bin b and N_<b the negatives below it: scores within one bin count as ties. With a few
  hundred quantile bins this differs from the exact AUC by well under 0.01 (tested against
  scikit-learn); the point estimates use the exact AUC, only the resamples use the bins.
- ECE = Σ_k (n_k / n) |mean score_k - mean y_k| over ``ece_bins`` equal-mass bins of the pooled
  scores (unions of the fine bins); in a resample each row's score is its cell's mean score.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 10


def score_bins(scores: np.ndarray, bins: int) -> tuple[np.ndarray, int]:
    """Quantile bin (0..n_bins-1) of each score, and the number of distinct bins."""
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, scores, side="right"), len(edges) + 1


def _onehot(index: np.ndarray, size: int, values=None) -> np.ndarray:
    out = np.zeros((len(index), size))
    out[np.arange(len(index)), index] = 1.0 if values is None else values
    return out


def auc_from_bins(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC from per-bin positive and negative counts (last axis = bins, ascending scores)."""
    below = np.cumsum(neg, -1) - neg
    with np.errstate(divide="ignore", invalid="ignore"):
        return (pos * (below + neg / 2)).sum(-1) / (pos.sum(-1) * neg.sum(-1))


def ece_from_bins(n: np.ndarray, pos: np.ndarray, score_sum: np.ndarray) -> np.ndarray:
    """Expected calibration error Σ_k |score_sum_k - pos_k| / n from per-bin sums (last axis)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(score_sum - pos).sum(-1) / n.sum(-1)


def binned_resamples(
    codes: np.ndarray, cells: np.ndarray, bins: np.ndarray, scores: np.ndarray,
    n_groups: int, n_bins: int, n_boot: int, seed: int,
) -> dict[str, np.ndarray]:
    """Resampled sufficient statistics, rows resampled within each group.

    Parameters
    ----------
    codes : int array, the group (0..n_groups-1) of each row.
    cells : int array, ``4 * flip + 2 * y + ŷ`` of each row.
    bins : int array, the score bin (0..n_bins-1) of each row.
    scores : float array, each row's score (for the calibration error).

    Returns
    -------
    dict of arrays with leading shape (n_boot, n_groups): ``counts`` (..., 8) cell counts,
    ``pos`` / ``neg`` (..., n_bins) positives / negatives per score bin, and ``ece_n``,
    ``ece_pos``, ``ece_score`` (..., ECE_BINS) rows, positives and score sums per coarse bin.
    """
    rng = np.random.default_rng(seed)
    fine = (codes * n_bins + bins) * 8 + cells  # one code per (group, bin, cell)
    occupied, inverse, count = np.unique(fine, return_inverse=True, return_counts=True)
    mean_score = np.bincount(inverse, weights=scores) / count
    o_group, o_bin, o_cell = occupied // (8 * n_bins), occupied // 8 % n_bins, occupied % 8
    o_y = (o_cell // 2) % 2
    o_coarse = o_bin * ECE_BINS // n_bins  # equal-mass unions of the quantile bins
    # map occupied cells to each statistic: resampled stats = draws @ mapping
    mapping = np.concatenate([
        _onehot(o_cell, 8), _onehot(o_bin, n_bins, o_y), _onehot(o_bin, n_bins, 1 - o_y),
        _onehot(o_coarse, ECE_BINS), _onehot(o_coarse, ECE_BINS, o_y),
        _onehot(o_coarse, ECE_BINS, mean_score),
    ], axis=1)
    stats = np.zeros((n_boot, n_groups, mapping.shape[1]))
    for g in range(n_groups):
        mine = np.flatnonzero(o_group == g)
        n_g = count[mine].sum()
        draws = rng.multinomial(n_g, count[mine] / n_g, size=n_boot)  # (n_boot, K_g)
        stats[:, g] = draws @ mapping[mine]
    splits = np.cumsum([8, n_bins, n_bins, ECE_BINS, ECE_BINS])
    names = ("counts", "pos", "neg", "ece_n", "ece_pos", "ece_score")
    return dict(zip(names, np.split(stats, splits, axis=-1), strict=True))
