"""Stratified bootstrap of binned predictions: every metric from resampled cell counts.

Each row falls in one cell of its group: (score bin, flip, y, ŷ), with ``bins`` quantile bins
of the pooled scores. Every metric is a function of the cell counts, so a resample only needs
its counts, never its rows. Two designs:

- **Images.** Resampling rows within a group (a bootstrap stratified by group, which never
  leaves a group empty) is the same as drawing that group's cell counts from a multinomial with
  the observed cell shares, so B resamples cost B multinomial draws over at most ``8 * bins``
  occupied cells, whatever the number of rows.
- **Patients** (a cluster bootstrap). The images of one patient are not independent, so whole
  patients are resampled. A patient is the vector of its images' cell counts and a resample is
  a weighting of patients: how many times each was drawn (with replacement, as many draws as
  patients). Patients with the same counts are interchangeable, so they are merged into one
  *type* drawn as often as its members together. The stratum of a patient is the set of groups
  its images fall in: a patient whose images are all in s=0 is drawn among such patients, one
  with images in both s=0 and s=1 (S is drawn per image) among those, and always brings all its
  images. Every group keeps at least one image in every resample (each stratum keeps its number
  of patients, each with an image in each of its groups) and a patient's images in two groups
  move together, so a gap between them keeps their correlation. A patient with one image is an
  image: without repeated patients both designs give the same numbers.
- **Patients, drawn once for several models.** The strata and the draws depend on the
  patients and their groups, not on a model's cells: :func:`patient_draws` makes them once
  (how many times each patient is drawn in each resample, patients x resamples small integers)
  and every model scored on the same images and groups (seeds, threshold methods, schemes)
  takes its resamples as a sparse product, images of each (cell, patient) times the draws
  (:class:`SharedDraws`, ``draws`` of :func:`binned_resamples`). The types above are then of
  no use: a type's draws would be the sum of its members'. The same bootstrap on other random
  draws: intervals differ from the per-call draws by Monte-Carlo error (tested). At NIH test
  scale (9,000 patients, 8 pairs x 3 seeds, 3 attributes) the bootstrap took 2.5 to 3.7 times
  less (two runs of ``benchmarks/audit.py --baseline`` on a busy machine).

The counting metrics (accuracy, TPR, ...) are exact functions of the counts; AUC and
calibration error are computed from the binned scores:

- AUC = Σ_b P_b (N_<b + N_b / 2) / (P N), where P_b, N_b count positives and negatives in score
  bin b and N_<b the negatives below it: scores within one bin count as ties. With a few
  hundred quantile bins this differs from the exact AUC by well under 0.01 (tested against
  scikit-learn); the point estimates use the exact AUC, only the resamples use the bins.
- ECE = Σ_k (n_k / n) |mean score_k - mean y_k| over ``ece_bins`` equal-mass bins of the pooled
  scores (unions of the fine bins); in a resample each row's score is its cell's mean score.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

ECE_BINS = 10
# the largest array one chunk of patient resamples holds, in elements (8 MiB of float64):
# memory stays bounded whatever the number of patients and resamples
CHUNK = 1 << 20
FLOAT32_WHOLE = 1 << 24  # float32 holds every whole number below this one


def score_bins(scores: np.ndarray, bins: int) -> tuple[np.ndarray, int]:
    """Quantile bin (0..n_bins-1) of each score, and the number of distinct bins."""
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, scores, side="right"), len(edges) + 1


def auc_from_bins(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUC from per-bin positive and negative counts (``axis`` = bins, ascending scores)."""
    below = np.cumsum(neg, axis) - neg
    with np.errstate(divide="ignore", invalid="ignore"):
        return (pos * (below + neg / 2)).sum(axis) / (pos.sum(axis) * neg.sum(axis))


def ece_from_bins(n: np.ndarray, pos: np.ndarray, score_sum: np.ndarray) -> np.ndarray:
    """Expected calibration error Σ_k |score_sum_k - pos_k| / n from per-bin sums (last axis)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(score_sum - pos).sum(-1) / n.sum(-1)


def binned_resamples(
    codes: np.ndarray, cells: np.ndarray, bins: np.ndarray, scores: np.ndarray,
    n_groups: int, n_bins: int, n_boot: int, seed: int, units: np.ndarray | None = None,
    draws: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Resampled sufficient statistics, rows (or whole patients) resampled within strata.

    Parameters
    ----------
    codes : int array, the group (0..n_groups-1) of each row.
    cells : int array, ``4 * flip + 2 * y + ŷ`` of each row.
    bins : int array, the score bin (0..n_bins-1) of each row.
    scores : float array, each row's score (for the calibration error).
    units : array, optional
        The patient of each row (any ids): whole patients are resampled. None: rows are.
    draws : int array (patients, n_boot), optional
        How many times each patient is drawn in each resample (:func:`patient_draws`, the
        same for every model scored on these images and groups); ``units`` are then the
        patients' codes 0..patients-1 and ``seed`` is not read. None: the patients are drawn
        here, merged into types (:func:`patient_types`). Without repeated patients the rows
        are resampled either way.

    Returns
    -------
    dict of arrays with leading shape (n_boot, n_groups): ``counts`` (..., 8) cell counts,
    ``pos`` / ``neg`` (..., n_bins) positives / negatives per score bin, and ``ece_n``,
    ``ece_pos``, ``ece_score`` (..., ECE_BINS) rows, positives and score sums per coarse bin.
    With ``draws`` (and repeated patients), ``auc`` (n_boot, n_groups + 1), the binned AUC
    of each group then of all rows (:func:`auc_from_bins`), in place of ``pos`` and ``neg``:
    the score bins are reduced chunk by chunk, never a resamples x groups x bins array.
    """
    rng = np.random.default_rng(seed)
    fine = (codes * n_bins + bins) * 8 + cells  # one code per (group, bin, cell)
    occupied, inverse, count = np.unique(fine, return_inverse=True, return_counts=True)
    mapping = _mapping(occupied, np.bincount(inverse, weights=scores) / count, n_bins)
    o_group = occupied // (8 * n_bins)
    if draws is not None and units is not None and len(np.unique(units)) < len(units):
        return _drawn_resamples(units, inverse, o_group, mapping, n_groups, n_bins, draws,
                                n_boot)
    if units is None or len(np.unique(units)) == len(units):
        stats = np.zeros((n_boot, n_groups, mapping.shape[1]))
        for g in range(n_groups):
            mine = np.flatnonzero(o_group == g)
            n_g = count[mine].sum()
            draws = rng.multinomial(n_g, count[mine] / n_g, size=n_boot)  # (n_boot, K_g)
            stats[:, g] = draws @ mapping[mine].toarray()
    else:
        stats = _patient_stats(units, inverse, o_group, mapping, n_groups, n_boot, rng)
    splits = np.cumsum([8, n_bins, n_bins, ECE_BINS, ECE_BINS])
    names = ("counts", "pos", "neg", "ece_n", "ece_pos", "ece_score")
    return dict(zip(names, np.split(stats, splits, axis=-1), strict=True))


def _mapping(occupied: np.ndarray, mean_score: np.ndarray, n_bins: int) -> sparse.csr_matrix:
    """What one row of each occupied cell adds to each statistic: (cells, statistics).

    Columns: 8 cell counts, positives then negatives per score bin, then rows, positives and
    score sums per coarse (ECE) bin; resampled statistics = resampled cell counts @ mapping.
    """
    o_bin, o_cell = occupied // 8 % n_bins, occupied % 8
    o_y = (o_cell // 2) % 2
    o_coarse = o_bin * ECE_BINS // n_bins  # equal-mass unions of the quantile bins
    ece = 8 + 2 * n_bins
    columns = [o_cell, 8 + o_bin + n_bins * (1 - o_y), ece + o_coarse,
               ece + ECE_BINS + o_coarse, ece + 2 * ECE_BINS + o_coarse]
    values = [np.ones(len(occupied))] * 3 + [o_y.astype(float), mean_score]
    rows = np.tile(np.arange(len(occupied)), len(columns))
    out = sparse.csr_matrix((np.concatenate(values), (rows, np.concatenate(columns))),
                            shape=(len(occupied), ece + 3 * ECE_BINS))
    out.eliminate_zeros()
    return out


def patient_types(units: np.ndarray, inverse: np.ndarray, n_cells: int):
    """Distinct patients by their cell counts, ordered by those counts alone.

    Returns the (types, cells) matrix of counts and how many patients each type has. The
    order depends on the counts only, so the resamples do not depend on the row order or on
    how patients are named.
    """
    units = np.unique(units, return_inverse=True)[1].astype(np.int64)  # 0..patients-1
    pair, pair_n = np.unique(units * n_cells + inverse, return_counts=True)
    p_unit, p_cell = np.divmod(pair, n_cells)  # sorted by patient, then cell
    length = np.bincount(p_unit)
    start = np.cumsum(length) - length
    cells, counts, members, lengths = [], [], [], []
    for size in np.unique(length):  # patients with as many occupied cells, rows side by side
        at = start[length == size, None] + np.arange(size)
        kinds, n_of = np.unique(np.hstack([p_cell[at], pair_n[at]]), axis=0,
                                return_counts=True)
        cells.append(kinds[:, :size].ravel())
        counts.append(kinds[:, size:].ravel())
        members.append(n_of)
        lengths.append(np.full(len(n_of), size))
    indptr = np.r_[0, np.cumsum(np.concatenate(lengths))]
    types = sparse.csr_matrix((np.concatenate(counts).astype(float), np.concatenate(cells),
                               indptr), shape=(len(indptr) - 1, n_cells))
    return types, np.concatenate(members)


def _patient_stats(units, inverse, o_group, mapping, n_groups, n_boot, rng) -> np.ndarray:
    """Statistics of ``n_boot`` patient resamples, (n_boot, n_groups, statistics)."""
    n_stats = mapping.shape[1]
    types, members = patient_types(units, inverse, len(o_group))
    # the stratum of a type: the set of groups its cells fall in
    in_group = sparse.csr_matrix((np.ones(types.nnz), o_group[types.indices], types.indptr),
                                 shape=(types.shape[0], n_groups)).toarray() > 0
    signatures, stratum = np.unique(in_group, axis=0, return_inverse=True)
    stratum = stratum.ravel()  # numpy 2.0.0 gave it a trailing axis
    stats = np.zeros((n_boot, n_groups, n_stats))
    for s, groups in enumerate(signatures):
        groups = np.flatnonzero(groups)
        mine = np.flatnonzero(stratum == s)
        # cells of this stratum: counts of each type (cells, types), and what each adds to the
        # statistics of each of its groups (groups * statistics, cells)
        cells = np.unique(types[mine].indices)
        to_cells = types[mine][:, cells].T.tocsr()
        local = np.searchsorted(groups, o_group[cells])
        per_cell = mapping[cells].tocoo()
        to_stats = sparse.csr_matrix(
            (per_cell.data, (local[per_cell.row] * n_stats + per_cell.col, per_cell.row)),
            shape=(len(groups) * n_stats, len(cells)))
        slot = np.repeat(np.arange(len(mine)), members[mine])  # the type of each patient
        n_pat = len(slot)
        step = max(1, CHUNK // max(n_pat, len(cells), len(groups) * n_stats))
        for lo in range(0, n_boot, step):
            b = min(step, n_boot - lo)
            # each resample draws as many patients as the stratum has, with replacement
            drawn = slot[rng.integers(0, n_pat, size=(b, n_pat), dtype=np.int32)]
            # times each type was drawn in each resample: (types, b)
            times = np.bincount((drawn * b + np.arange(b)[:, None]).ravel(),
                                minlength=len(mine) * b).reshape(len(mine), b)
            resampled = to_stats @ (to_cells @ times)  # (groups * statistics, b)
            stats[lo:lo + b, groups] += resampled.reshape(len(groups), n_stats, b).transpose(
                2, 0, 1)
    return stats


def patient_draws(units: np.ndarray, codes: np.ndarray, n_groups: int, n_boot: int,
                  seed: int) -> np.ndarray:
    """How many times each patient is drawn in each resample, within strata: (patients, n_boot).

    ``units`` are the patients' codes 0..patients-1 of each row, ``codes`` the rows' groups.
    The stratum of a patient is the set of groups its images fall in (as in
    :func:`binned_resamples`); a resample draws as many patients of each stratum as it has,
    with replacement. Nothing here depends on a model: the draws serve every model scored
    on these images (:class:`SharedDraws`). Strata in the order of their sets of groups,
    patients of a stratum in the order of their codes; resamples in chunks of at most
    ``CHUNK`` draws, and uniform draws (one 64-bit word each, ``floor(u * n)``) that do not
    depend on the chunk size. Stored as uint8 (uint32 should a patient be drawn more than 255
    times): patients x n_boot bytes (9 MB for 9,000 patients and 1,000 resamples).
    """
    units = np.asarray(units, dtype=np.int64)
    n_pat = int(units.max()) + 1 if len(units) else 0
    in_group = np.zeros((n_pat, n_groups), bool)
    in_group[units, codes] = True
    signatures, stratum = np.unique(in_group, axis=0, return_inverse=True)
    stratum = stratum.ravel()  # numpy 2.0.0 gave it a trailing axis
    rng = np.random.default_rng(seed)
    times = np.zeros((n_pat, n_boot), np.uint8)
    for s in range(len(signatures)):
        mine = np.flatnonzero(stratum == s)
        n_s = len(mine)
        step = max(1, CHUNK // n_s)
        for lo in range(0, n_boot, step):
            b = min(step, n_boot - lo)
            drawn = np.minimum((rng.random((b, n_s)) * n_s).astype(np.int64), n_s - 1)
            counts = np.bincount((drawn + n_s * np.arange(b)[:, None]).ravel(),
                                 minlength=b * n_s).reshape(b, n_s)
            if counts.max(initial=0) > np.iinfo(times.dtype).max:  # a patient drawn > 255 times
                times = times.astype(np.uint32)
            times[mine, lo:lo + b] = counts.T
    return times


class SharedDraws:
    """The patient draws of :func:`patient_draws`, made once for every model scored on the
    same images and groups (a cache: same patients, groups, resamples and seed, same draws).

    Several models evaluated on one test set (seeds, threshold methods, schemes) then differ
    only in what each patient brings, a sparse product with the draws
    (:func:`binned_resamples` with ``draws``). At most ``max_bytes`` of draws are kept, the
    oldest dropped first.
    """

    def __init__(self, max_bytes: int = 1 << 28):
        self.max_bytes = max_bytes
        self._draws: dict[tuple, np.ndarray] = {}

    def get(self, units: np.ndarray, codes: np.ndarray, n_groups: int, n_boot: int,
            seed: int) -> np.ndarray:
        """The draws of these patients (codes 0..), groups, resamples and seed."""
        units, codes = np.asarray(units, np.int64), np.asarray(codes, np.int64)
        key = (units.tobytes(), codes.tobytes(), n_groups, n_boot, seed)
        if key not in self._draws:
            draws = patient_draws(units, codes, n_groups, n_boot, seed)
            while self._draws and sum(d.nbytes for d in self._draws.values()) + \
                    draws.nbytes > self.max_bytes:
                self._draws.pop(next(iter(self._draws)))
            self._draws[key] = draws
        return self._draws[key]


def _drawn_resamples(units, inverse, o_group, mapping, n_groups, n_bins, draws,
                     n_boot) -> dict[str, np.ndarray]:
    """The resamples of ``draws`` (:func:`binned_resamples`' dict with ``auc``).

    A patient adds its images' cells (``to_cells``, cells x patients), a cell its statistics
    to its group (``to_stats``): resampled statistics = to_stats @ to_cells @ draws, in chunks
    of resamples. Each chunk's positives and negatives per score bin are turned into AUCs at
    once: the arrays kept are a few numbers per resample and group.
    """
    units = np.asarray(units, dtype=np.int64)
    n_pat, n_cells, n_stats = draws.shape[0], len(o_group), mapping.shape[1]
    if draws.shape[1] != n_boot or n_pat <= units.max(initial=-1):
        raise ValueError(f"draws: expected (at least {units.max(initial=-1) + 1} patients, "
                         f"{n_boot} resamples), got shape {draws.shape}")
    # images of each (cell, patient). A resample holds as many patients as there are, so a
    # cell counts at most patients x (most images of one) of them: whole numbers, exact in
    # float32 below 2 ** 24, which halves the memory the first product reads
    exact = n_pat * np.bincount(units).max(initial=0) < FLOAT32_WHOLE
    real = np.float32 if exact else np.float64
    to_cells = sparse.csr_matrix((np.ones(len(units), real), (inverse, units)),
                                 shape=(n_cells, n_pat))
    per_cell = mapping.tocoo()
    to_stats = sparse.csr_matrix(
        (per_cell.data, (o_group[per_cell.row] * n_stats + per_cell.col, per_cell.row)),
        shape=(n_groups * n_stats, n_cells))
    counts, auc = np.empty((n_boot, n_groups, 8)), np.empty((n_boot, n_groups + 1))
    ece = np.empty((n_boot, n_groups, 3 * ECE_BINS))
    step = max(1, CHUNK // max(n_pat, n_cells, n_groups * n_stats))
    for lo in range(0, n_boot, step):
        b = min(step, n_boot - lo)
        cells = (to_cells @ draws[:, lo:lo + b].astype(real)).astype(float)
        stats = (to_stats @ cells).reshape(
            n_groups, n_stats, b)  # (groups, statistics, resamples of the chunk)
        counts[lo:lo + b] = stats[:, :8].transpose(2, 0, 1)
        ece[lo:lo + b] = stats[:, 8 + 2 * n_bins:].transpose(2, 0, 1)
        # bins along axis 1, the chunk's resamples contiguous: all rows' AUC last
        pos, neg = (np.concatenate([part, part.sum(0, keepdims=True)])
                    for part in (stats[:, 8:8 + n_bins], stats[:, 8 + n_bins:8 + 2 * n_bins]))
        auc[lo:lo + b] = auc_from_bins(pos, neg, axis=1).T
    ece_n, ece_pos, ece_score = np.split(ece, 3, axis=-1)
    return {"counts": counts, "auc": auc, "ece_n": ece_n, "ece_pos": ece_pos,
            "ece_score": ece_score}
