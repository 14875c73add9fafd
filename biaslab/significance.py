"""Significance of the between-group gaps: permutation tests, and corrections for many of them.

A gap of :func:`biaslab.metrics.gaps` (DI, SPD, EOD, ...) is significant when it is larger than
the gaps one gets by giving the same outcomes to groups drawn at random. The test permutes the
**group labels** over the units of the data, keeping every unit's outcomes (its labels y and
decisions ŷ, and its scores): under the null hypothesis that the group is independent of the
outcome the gap measures, every such relabelling is as likely as the observed one (Good 2005,
*Permutation, Parametric and Bootstrap Tests of Hypotheses*, 3rd ed.; DiCiccio, Vasudevan,
Basu, Kenthapadi and Agarwal 2020, "Evaluating fairness using permutation tests", KDD).

Which relabellings (the strata), chosen for what each gap compares:

- **DI and SPD** compare the groups' selection rates P(ŷ=1|g): parity means ŷ independent of g,
  whatever the groups' base rates. The labels are permuted over all units (no strata), so the
  test asks whether DI differs from 1 (SPD from 0) beyond chance. Permuting within y instead
  would test whether DI differs from the base-rate DI (a perfect classifier's), another
  question: with p0=0.4, p1=0.6 a perfect classifier has DI 0.67 and every within-y
  permutation too, p = 1. That question is the one of the **excess** DI and SPD (what the
  decisions add to the labels' disparity), tested within y; the **base** DI and SPD (the
  labels' own disparity, P(y=1|g)) are tested over all units: is y independent of g.
- **EOD, AOD, equalized odds, worst-group balanced accuracy, AUC gap** compare rates
  conditional on the true label (TPR among positives, FPR among negatives). The labels are
  permuted within strata of y, so each group keeps its numbers of positives and negatives (the
  denominators of these rates) and the test asks whether ŷ depends on g given y.

**Patients.** When several images come from one patient (``patients`` given), they are not
independent, and the unit that is relabelled follows how the group was assigned:

- a patient whose images are all in one group (the group is an attribute of the patient, such as
  sex) is relabelled as a whole, with all its images, among the patients of one group: patients
  are the exchangeable units (Good 2005, on blocks and clusters). For the y-conditional gaps
  the stratum of a patient is the set of labels its images carry (negatives only, positives
  only, both); with one image per patient this is the image's y;
- a patient whose images fall in several groups (the group varies between images, such as a
  bias S drawn per image) keeps its number of images in each group, and the group labels are
  permuted among its own images (within each y for the conditional gaps): the patient is a block.

Relabelling images of one patient as if independent makes the null distribution too narrow
and the test anti-conservative on clustered data (tested).

**Counts, not rows.** Every statistic is a function of each group's histogram of image codes
``(2 y + ŷ) * bins + score bin``. Units with the same histogram are interchangeable, so a
permutation only decides how many units of each type go to each group: a random contingency
table with fixed margins (units per group, units per type), drawn exactly as a chain of
hypergeometric draws, vectorised over the permutations (or, with many types, by shuffling the
labels of the units). Blocks of several groups in one patient are shuffled image by image. The
statistic of permutation r is then :func:`biaslab.metrics.gaps` of the permuted histograms.

**p-value.** Two-sided, from the size of the gap: |log DI|, |SPD|, |EOD|, |AOD|, the equalized
odds difference and the AUC gap themselves (already ranges), and the range max - min of the
groups' balanced accuracies for the worst-group balanced accuracy (a low worst group is a wide
range); |log| of the base and excess DI, |.| of the base and excess SPD.
p = (1 + #{r: stat_r >= stat}) / (1 + #{r: stat_r defined}) over the n_perm random
relabellings r (Phipson and Smyth 2010, "Permutation p-values should never be zero": the
observed labelling counts as one of them, so the test keeps its level exactly). The AUC of
both the data and the permutations is the binned AUC of
:func:`biaslab.bootstrap.auc_from_bins` (``bins`` quantile bins of the scores: 64 keep the
test fast, 256 cost five times more). An undefined gap (a group without positives, ...) has
p = NaN.

**Many gaps.** A run tests many gaps (schemes x methods x attributes x gaps); :func:`adjust`
corrects their p-values together: Holm (1979) keeps the chance of any false rejection
(family-wise error) at most alpha under any dependence between the tests; Benjamini and
Hochberg (1995) keeps the expected share of false rejections among the rejections at most
alpha (independent or positively dependent tests), with more power.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from biaslab.bootstrap import auc_from_bins, patient_types, score_bins
from biaslab.metrics import GAPS, gaps, rates

CORRECTIONS = ("holm", "bh")
# gaps tested with the labels permuted over all units; the others within strata of y
UNCONDITIONAL = ("disparate_impact", "statistical_parity_difference", "base_disparate_impact",
                 "base_statistical_parity_difference")
# the largest array one chunk of permutations holds, in elements: memory stays bounded
CHUNK = 1 << 21


def permutation_pvalues(
    y, decisions, groups, *, patients=None, n_perm: int = 1000, seed: int = 0, scores=None,
    bins: int = 64,
) -> dict[str, float]:
    """Two-sided permutation p-value of each gap of :func:`biaslab.metrics.gaps`.

    Parameters
    ----------
    y, decisions : array of 0/1, the true labels and the decisions of each image.
    groups : array, the group of each image (two groups or more; the last in sorted order is
        the reference, as in :func:`~biaslab.metrics.gaps`).
    patients : array, optional
        The patient of each image (any ids): images of one patient are relabelled together
        (see the module docstring). None: each image is its own unit.
    n_perm : int
        Permutations; 0 gives NaN p-values (the test is off).
    seed : int
        Seed of the permutations.
    scores : array of float, optional
        Scores for the AUC gap (its p-value is NaN without them).
    bins : int
        Quantile bins of the scores for the AUC.

    Returns
    -------
    dict
        ``{gap: p}`` for each gap of :data:`biaslab.metrics.GAPS`, in that order; NaN where the
        gap is undefined.
    """
    y, d, codes, n_groups, units = _check(y, decisions, groups, patients, n_perm)
    if scores is None:
        bin_of, n_bins = np.zeros(len(y), dtype=np.int64), 1
    else:
        scores = np.asarray(scores, dtype=float)
        if scores.shape != y.shape or np.isnan(scores).any():
            raise ValueError(f"scores: expected {len(y)} values without NaN, like labels")
        bin_of, n_bins = score_bins(scores, bins)
    rng = np.random.default_rng(seed)
    pvalues = dict.fromkeys(GAPS, np.nan)
    # DI, SPD: all units exchangeable, only the (y, ŷ) cell matters; the others: within y
    for names, code, n_codes, by_label in (
        (UNCONDITIONAL, 2 * y + d, 4, False),
        ([g for g in GAPS if g not in UNCONDITIONAL], (2 * y + d) * n_bins + bin_of,
         4 * n_bins, True),
    ):
        observed = np.bincount(codes * n_codes + code, minlength=n_groups * n_codes)
        stat = _statistics(observed.reshape(1, n_groups, n_codes), n_bins if by_label else 1)
        perm = _permuted_statistics(units, codes, code, y if by_label else None, n_groups,
                                    n_codes, n_bins if by_label else 1, n_perm, rng)
        for name in names:
            if name in stat:
                pvalues[name] = _pvalue(stat[name][0], perm[name])
    return {name: float(p) for name, p in pvalues.items()}


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


def _check(y, decisions, groups, patients, n_perm):
    y, d, groups = np.asarray(y), np.asarray(decisions), np.asarray(groups)
    n = len(y)
    for name, arr in (("labels", y), ("decisions", d)):
        if arr.shape != (n,) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name}: expected {n} values in {{0, 1}}, got shape {arr.shape}")
    if groups.shape != (n,) or pd.isna(groups).any():
        raise ValueError(f"groups: expected {n} values without missing ones, like labels")
    codes, values = pd.factorize(groups, sort=True)
    if len(values) < 2:
        raise ValueError(f"groups: a test of gaps needs at least two groups, got {list(values)}")
    if isinstance(n_perm, bool) or not isinstance(n_perm, int | np.integer) or n_perm < 0:
        raise ValueError(f"evaluate.n_perm: expected an integer >= 0, got {n_perm!r}")
    if patients is None:
        units = np.arange(n)
    else:
        patients = np.asarray(patients, dtype=object)
        if patients.shape != (n,) or pd.isna(patients).any():
            raise ValueError(f"patients: expected {n} ids without missing values, like labels")
        units = pd.factorize(patients)[0]
    return y.astype(np.int64), d.astype(np.int64), codes.astype(np.int64), len(values), units


def _statistics(hist: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """The size of each gap from histograms (..., groups, 4 * n_bins) of image codes."""
    h = hist.reshape(*hist.shape[:-1], 4, n_bins)
    counts = np.zeros((*hist.shape[:-1], 8))
    counts[..., :4] = h.sum(-1)  # cells 2 y + ŷ, no flips
    r = rates(counts)
    if n_bins > 1:
        r["auc"] = auc_from_bins(h[..., 2:, :].sum(-2), h[..., :2, :].sum(-2))
    g = gaps(r)
    ba = r["balanced_accuracy"]
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, value in g.items():
            if name == "worst_group_balanced_accuracy":  # NaN when a group's BA is, like the gap
                out[name] = ba.max(-1) - ba.min(-1)
            elif name.endswith("disparate_impact"):  # a ratio: DI 0.8 as far as 1.25
                out[name] = np.abs(np.log(value))
            else:
                out[name] = np.abs(value)
    return out


def _pvalue(observed: float, perm: np.ndarray) -> float:
    if np.isnan(observed) or len(perm) == 0:
        return np.nan
    defined = perm[~np.isnan(perm)]
    # equal gaps computed from other tables may differ in the last bits: ties count as >=
    at_least = (defined > observed) | np.isclose(defined, observed, rtol=1e-9, atol=1e-12)
    return (1 + at_least.sum()) / (1 + len(defined))


def _permuted_statistics(units, codes, code, label, n_groups, n_codes, n_bins, n_perm, rng):
    """Gap sizes of ``n_perm`` relabellings, {gap: (n_perm,)}; ``label`` None: no strata."""
    # a unit with images in one group moves whole; one with several is a block of its own
    pairs = np.unique(units * n_groups + codes)
    n_in = np.bincount(pairs // n_groups, minlength=units.max() + 1)
    mixed = n_in[units] > 1
    whole = _whole_unit_strata(units[~mixed], codes[~mixed], code[~mixed],
                               None if label is None else label[~mixed], n_groups, n_codes)
    block = units[mixed] if label is None else units[mixed] * 2 + label[mixed]
    order = np.argsort(block, kind="stable")
    block, in_group, in_code = block[order], codes[mixed][order], code[mixed][order]
    # per permutation: its histograms, its table of each stratum (or its shuffled units) and
    # the keys of its blocks
    widest = max([max(n_groups * len(m), m.sum()) for _, m, _ in whole] + [1])
    step = max(1, CHUNK // (n_groups * n_codes + widest + len(block)))
    out = {name: np.empty(n_perm) for name in GAPS}
    for lo in range(0, n_perm, step):
        b = min(step, n_perm - lo)
        hist = np.zeros((b * n_groups, n_codes))
        for types, members, sizes in whole:
            table = _draw_table(members, sizes, b, rng)  # (b, groups, types)
            hist += (types.T @ table.reshape(b * n_groups, -1).T).T
        if len(block):  # each row of keys sorts within blocks only: a shuffle per block
            shuffled = np.argsort(block + rng.random((b, len(block))), axis=1)
            flat = (np.arange(b)[:, None] * n_groups + in_group[shuffled]) * n_codes + in_code
            hist += np.bincount(flat.ravel(), minlength=b * n_groups * n_codes).reshape(
                b * n_groups, n_codes)
        stats = _statistics(hist.reshape(b, n_groups, n_codes), n_bins)
        for name, value in stats.items():
            if name in out:
                out[name][lo:lo + b] = value
    return out


def _whole_unit_strata(units, codes, code, label, n_groups, n_codes):
    """Strata of units relabelled whole: [(types (K, n_codes), members (K,), sizes (groups,))].

    The stratum of a unit is the set of labels of its images (all units in one without
    ``label``); units with the same histogram of codes are one type.
    """
    if len(units) == 0:
        return []
    units = pd.factorize(units)[0]
    single = units.max() + 1 == len(units)
    signature = np.zeros(units.max() + 1, dtype=np.int64)
    if label is not None:
        np.bitwise_or.at(signature, units, 1 << label)  # 1: negatives, 2: positives, 3: both
    group = np.zeros(units.max() + 1, dtype=np.int64)
    group[units] = codes
    strata = []
    for s in np.unique(signature):
        mine = signature[units] == s
        if single:  # one image per unit: its code is its type
            kinds, members = np.unique(code[mine], return_counts=True)
            types = sparse.csr_matrix((np.ones(len(kinds)), (np.arange(len(kinds)), kinds)),
                                      shape=(len(kinds), n_codes))
        else:
            types, members = patient_types(units[mine], code[mine], n_codes)
        sizes = np.bincount(group[signature == s], minlength=n_groups)
        strata.append((types, members, sizes))
    return strata


def _draw_table(members: np.ndarray, sizes: np.ndarray, b: int, rng) -> np.ndarray:
    """``b`` random tables (b, groups, types) of units per group and type, margins fixed.

    Giving the ``sizes.sum()`` units random group labels (``sizes[g]`` of group g) makes the
    counts of each type in each group a multivariate hypergeometric table. Few types: drawn
    as a chain of hypergeometric draws, group by group, type by type (vectorised over the b
    tables); many types: the labels are shuffled over the units and counted.
    """
    n_groups, n_types = len(sizes), len(members)
    table = np.zeros((b, n_groups, n_types), dtype=np.int64)
    if (n_groups - 1) * (n_types - 1) * 64 <= members.sum():
        left = np.broadcast_to(members, (b, n_types)).copy()  # units of each type not placed
        for g in range(n_groups - 1):
            need = np.full(b, sizes[g])
            after = left.sum(1)  # then: units left of the types after k
            for k in range(n_types - 1):
                after -= left[:, k]
                x = rng.hypergeometric(left[:, k], after, need)
                table[:, g, k], need = x, need - x
                left[:, k] -= x
            table[:, g, -1] = need
            left[:, -1] -= need
        table[:, -1] = left
        return table
    type_of = np.repeat(np.arange(n_types), members)
    labels = rng.permuted(np.broadcast_to(np.repeat(np.arange(n_groups), sizes),
                                          (b, len(type_of))), axis=1)
    flat = (np.arange(b)[:, None] * n_groups + labels) * n_types + type_of
    return np.bincount(flat.ravel(), minlength=b * n_groups * n_types).reshape(table.shape)
