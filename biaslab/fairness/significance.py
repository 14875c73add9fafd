"""Significance of the between-group gaps: permutation tests.

A gap of :func:`biaslab.fairness.metrics.gaps` (DI, SPD, EOD, ...) is significant when it is
larger than the gaps one gets by giving the same outcomes to groups drawn at random. The test
permutes the **group labels** over the units of the data, keeping every unit's outcomes (its
labels y and decisions ŷ, and its scores): under the null hypothesis that the group is
independent of the outcome the gap measures, every such relabelling is as likely as the
observed one (Good 2005, *Permutation, Parametric and Bootstrap Tests of Hypotheses*, 3rd ed.;
DiCiccio, Vasudevan, Basu, Kenthapadi and Agarwal 2020, "Evaluating fairness using permutation
tests", KDD).

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
``(2 y + ŷ) * bins + score bin``, so a permutation only decides how many units of each type go
to each group (drawn by :mod:`biaslab.fairness.relabellings`). Blocks of several groups in one
patient are shuffled image by image. The statistic of permutation r is then
:func:`biaslab.fairness.metrics.gaps` of the permuted histograms.

**p-value.** Two-sided, from the size of the gap: |log DI|, |SPD|, |EOD|, |AOD|, the equalized
odds difference and the AUC gap themselves (already ranges), and the range max - min of the
groups' balanced accuracies for the worst-group balanced accuracy (a low worst group is a wide
range); |log| of the base and excess DI, |.| of the base and excess SPD.
p = (1 + #{r: stat_r >= stat}) / (1 + #{r: stat_r defined}) over the n_perm random
relabellings r (Phipson and Smyth 2010, "Permutation p-values should never be zero": the
observed labelling counts as one of them, so the test keeps its level exactly). The AUC of
both the data and the permutations is the binned AUC of
:func:`biaslab.fairness.bootstrap.auc_from_bins` (``bins`` quantile bins of the scores: 64 keep
the test fast, 256 cost five times more). An undefined gap (a group without positives, ...)
has p = NaN.

**Several training seeds.** A scheme trained with m seeds gives m models that decide on the
same test images: ``decisions`` (and ``scores``) are then (m, n), a row per seed, and the
reported gap is the mean over the seeds. The statistic is the mean over the m seeds of each
seed's gap size above, and each permutation relabels the groups once, identically for every
seed (the same strata, patients and blocks as with one seed): under the null hypothesis the
group is independent of the outcomes of all seeds together, so a unit's outcomes under every
seed move with it. Permuting each seed on its own would treat the seeds' gaps as independent,
which they are not (they share the images, and the chance imbalance of those between the
groups): the null distribution would be too narrow (tested). A unit's type is then its
histogram of codes under every seed jointly. Without scores (DI, SPD, the label-conditional
gaps) these types stay few; with binned scores they are about as many as the units, and the
units' labels are shuffled rather than drawn type by type. The draws serve every seed, and
the shuffled units of every seed are counted in one sparse product
(:func:`biaslab.fairness.relabellings.count_columns`); a chunk of permutations holds the
histograms of the m seeds (m x groups x codes per permutation). Cost with 3 seeds: 1.2 to 1.5
times one seed's on the benchmark's 100,000 images of 30,000 patients; 5 to 6 times on 100,000
single images with scores, where one seed's 256 types allowed the hypergeometric chain and
the seeds' joint types do not (measured before the product; ``benchmarks/metrics.py``).

**Several models.** :func:`model_pvalues` tests several models (the (scheme, method) pairs
of a run) on the same images with one relabelling for all: the rows of all their seeds are
counted on the same draws and each model's statistic is the mean over its own seeds. Each
test is the one :func:`permutation_pvalues` makes alone, on another random stream: its
p-values differ only by Monte-Carlo error (tested).

**Cost.** At NIH ChestX-ray14 test scale (``benchmarks/audit.py``: 22,000 images of 9,000
patients, 8 models x 3 seeds, sex x age group) the random draws, a shuffle of every unit per
permutation and stratum, were most of the cost, made again for every pair: shared across the
pairs they are made once. The shuffled units are counted for every row and group at once
(:func:`biaslab.fairness.relabellings.count_columns`), with exactly the draws and the
p-values of one model counted row by row (tested against a plain sum).

**Many gaps.** A run tests many gaps; :mod:`biaslab.fairness.corrections` corrects their
p-values together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.fairness.bootstrap import auc_from_bins, score_bins
from biaslab.fairness.metrics import GAPS, gaps, rates
from biaslab.fairness.relabellings import (
    count_columns,
    count_table,
    draw_stratum,
    unit_columns,
    whole_unit_strata,
)

# gaps tested with the labels permuted over all units; the others within strata of y
UNCONDITIONAL = ("disparate_impact", "statistical_parity_difference", "base_disparate_impact",
                 "base_statistical_parity_difference")
# the largest array one chunk of permutations holds, in elements: memory stays bounded
CHUNK = 1 << 21


def permutation_pvalues(
    y, decisions, groups, *, patients=None, n_perm: int = 1000, seed: int = 0, scores=None,
    bins: int = 64,
) -> dict[str, float]:
    """Two-sided permutation p-value of each gap of :func:`biaslab.fairness.metrics.gaps`.

    Parameters
    ----------
    y : array of 0/1, (n,)
        The true label of each image.
    decisions : array of 0/1, (n,) or (m, n)
        The decision on each image; with several training seeds, one row per seed (the m
        models' decisions on the same n images): the statistic is then the mean over the seeds
        of each seed's gap size (see the module docstring).
    groups : array, (n,)
        The group of each image (two groups or more; the last in sorted order is the
        reference, as in :func:`~biaslab.fairness.metrics.gaps`).
    patients : array, (n,), optional
        The patient of each image (any ids): images of one patient are relabelled together
        (see the module docstring). None: each image is its own unit.
    n_perm : int
        Permutations; 0 gives NaN p-values (the test is off).
    seed : int
        Seed of the permutations.
    scores : array of float, the shape of ``decisions``, optional
        Scores for the AUC gap (its p-value is NaN without them), one row per seed like
        ``decisions``.
    bins : int
        Quantile bins of the scores (of each seed's) for the AUC.

    Returns
    -------
    dict
        ``{gap: p}`` for each gap of :data:`biaslab.fairness.metrics.GAPS`, in that order; NaN
        where the gap is undefined (with several seeds: undefined for any seed).
    """
    return model_pvalues(y, [decisions], groups, patients=patients, n_perm=n_perm, seed=seed,
                         scores=None if scores is None else [scores], bins=bins)[0]


def model_pvalues(
    y, decisions, groups, *, patients=None, n_perm: int = 1000, seed: int = 0, scores=None,
    bins: int = 64,
) -> list[dict[str, float]]:
    """:func:`permutation_pvalues` of several models on the same images, one relabelling of
    the groups serving every model.

    ``decisions`` (and ``scores``, when given) is a list with one entry per model (a (scheme,
    method) pair, ...), each ``(n,)`` or ``(m, n)`` like :func:`permutation_pvalues`'s; the
    other parameters are its own. Each model's test is the one :func:`permutation_pvalues`
    makes, on relabellings drawn once for all the models: the draws, most of a test's cost,
    are shared, and each model's p-values are valid (they are dependent, as the gaps of one
    model are). With one model the p-values are exactly :func:`permutation_pvalues`'s; with
    several they differ from one call per model only as two random streams do (tested).

    Returns
    -------
    list of dict
        One ``{gap: p}`` per model, in the order of ``decisions``.
    """
    arrays = [np.asarray(d) for d in decisions]
    if not arrays:
        raise ValueError("decisions: expected the decisions of at least one model")
    # one model: its arrays as they are, so that any error names the shapes it was given
    stacked, stacked_scores = arrays[0], None if scores is None else scores[0]
    if len(arrays) > 1:
        for a in arrays:
            if a.ndim not in (1, 2):
                _check(y, a, groups, patients, n_perm)  # says what was expected
        stacked = np.vstack([a.reshape(-1, a.shape[-1]) for a in arrays])
        if scores is not None:
            stacked_scores = np.vstack([np.asarray(sc, dtype=float).reshape(
                -1, np.shape(sc)[-1]) for sc in scores])
    owner = np.repeat(np.arange(len(arrays)), [len(np.atleast_2d(a)) for a in arrays])
    y, d, codes, n_groups, units = _check(y, stacked, groups, patients, n_perm)
    bin_of, n_bins = _binned(stacked_scores, stacked.shape, bins)  # (rows, n)
    n_rows = len(d)
    rng = np.random.default_rng(seed)
    pvalues = [dict.fromkeys(GAPS, np.nan) for _ in arrays]
    # DI, SPD: all units exchangeable, only the (y, ŷ) cell matters; the others: within y
    for names, code, n_codes, by_label in (
        (UNCONDITIONAL, 2 * y + d, 4, False),
        ([g for g in GAPS if g not in UNCONDITIONAL], (2 * y + d) * n_bins + bin_of,
         4 * n_bins, True),
    ):  # code: (rows, n), one histogram (groups, n_codes) per row
        flat = (np.arange(n_rows)[:, None] * n_groups + codes) * n_codes + code
        observed = np.bincount(flat.ravel(), minlength=n_rows * n_groups * n_codes)
        stat = _statistics(observed.reshape(n_rows, n_groups, n_codes),
                           n_bins if by_label else 1)
        perm = _permuted_statistics(units, codes, code, y if by_label else None, n_groups,
                                    n_codes, n_bins if by_label else 1, n_perm, rng, owner)
        for name in names:
            if name in stat:
                for i, out in enumerate(pvalues):
                    out[name] = _pvalue(_seed_mean(stat[name][owner == i]), perm[name][i])
    return [{name: float(p) for name, p in out.items()} for out in pvalues]


def _check(y, decisions, groups, patients, n_perm):
    """Validated inputs: labels (n,), decisions (seeds, n), group codes, groups, units."""
    y, d, groups = np.asarray(y), np.asarray(decisions), np.asarray(groups)
    n = len(y)
    if y.shape != (n,):
        raise ValueError(f"labels: expected one value per image (shape (n,)), got shape {y.shape}")
    if d.shape != (n,) and (d.ndim != 2 or d.shape[1] != n or d.shape[0] == 0):
        raise ValueError(f"decisions: expected {n} values like labels, or one row of {n} per "
                         f"training seed (shape (seeds, {n})), got shape {d.shape}")
    for name, arr in (("labels", y), ("decisions", d)):
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f"image {at[-1]}" + (f" of seed row {at[0]}" if len(at) == 2 else "")
            raise ValueError(f"{name}: expected {n} values in {{0, 1}}, got {arr[at].item()!r} "
                             f"at {where}")
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
    return (y.astype(np.int64), d.reshape(-1, n).astype(np.int64), codes.astype(np.int64),
            len(values), units)


def _binned(scores, shape: tuple, bins: int) -> tuple[np.ndarray, int]:
    """Quantile bin of each score per seed (seeds, n), and the bins of the seed with most."""
    n = shape[-1]
    if scores is None:
        return np.zeros((int(np.prod(shape)) // n, n), dtype=np.int64), 1
    scores = np.asarray(scores, dtype=float)
    if scores.shape != shape:
        raise ValueError(f"scores: expected the shape of decisions, {shape} (one row per "
                         f"training seed), got shape {scores.shape}")
    if np.isnan(scores).any():
        at = tuple(int(i) for i in np.argwhere(np.isnan(scores))[0])
        where = f"image {at[-1]}" + (f" of seed row {at[0]}" if len(at) == 2 else "")
        raise ValueError(f"scores: expected {n} values without NaN, like labels, got NaN at "
                         f"{where}")
    # each seed's own quantile bins (its scores' scale is its own); a seed with fewer distinct
    # bins leaves the last ones empty, which adds nothing to its AUC
    binned = [score_bins(row, bins) for row in scores.reshape(-1, n)]
    return np.stack([b for b, _ in binned]), max(k for _, k in binned)


def _seed_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the seeds (axis 0); NaN where any seed's is.

    Where every seed has the same value it is that value, exactly: the mean of equal floats can
    differ from them in the last bit ((0.1 + 0.1 + 0.1) / 3), and m identical seeds should give
    exactly one seed's p-values.
    """
    same = (values == values[0]).all(0)
    return np.where(same, values[0], values.mean(0))


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


def _permuted_statistics(units, codes, code, label, n_groups, n_codes, n_bins, n_perm, rng,
                         owner):
    """Gap sizes of ``n_perm`` relabellings, for each model the mean over its seeds (the rows
    of ``code``, (rows, images), of model ``owner``), {gap: (models, n_perm)}; ``label``
    None: no strata."""
    # a unit with images in one group moves whole; one with several is a block of its own
    pairs = np.unique(units * n_groups + codes)
    n_in = np.bincount(pairs // n_groups, minlength=units.max() + 1)
    mixed = n_in[units] > 1
    whole = whole_unit_strata(units[~mixed], codes[~mixed], code[:, ~mixed],
                              None if label is None else label[~mixed], n_groups, n_codes)
    block = units[mixed] if label is None else units[mixed] * 2 + label[mixed]
    order = np.argsort(block, kind="stable")
    block, in_group, in_code = block[order], codes[mixed][order], code[:, mixed][:, order]
    # per permutation: the histograms, the table of a stratum (or its shuffled units) and the
    # keys of the blocks. The chunk fixes the random stream (m identical seeds draw exactly
    # what one does), so it is sized as it always was; the histograms of every seed at once
    # (m x groups x codes per permutation) are the only part that grows with the seeds
    widest = max([max(n_groups * len(st.members), st.members.sum()) for st in whole] + [1])
    n_models = owner.max() + 1
    step = max(1, CHUNK // (n_groups * n_codes * n_models + widest + len(block)))
    # the units of the shuffled strata and the block images, counted together (see
    # count_columns); the strata of few types are counted as tables
    columns = unit_columns(whole, in_code, n_codes)
    out = {name: np.empty((n_models, n_perm)) for name in GAPS}
    for lo in range(0, n_perm, step):
        b = min(step, n_perm - lo)
        # the same draws, in the same order, as when each stratum was counted on its own
        drawn = [draw_stratum(st, b, rng) for st in whole]
        labels = [d for st, d in zip(whole, drawn, strict=True) if st.shuffled]
        if len(block):  # each row of keys sorts within blocks only: a shuffle per block
            labels.append(in_group[np.argsort(block + rng.random((b, len(block))), axis=1)])
        counted = count_columns(columns, np.hstack(labels) if labels else np.zeros((b, 0), int),
                                n_groups)
        # (rows, b, groups, codes): every row's statistics in one call (exact integer counts,
        # so the same values as row by row)
        hist = np.ascontiguousarray(counted.reshape(b, n_groups, len(code), n_codes)
                                    .transpose(2, 0, 1, 3), dtype=float)
        for st, draw in zip(whole, drawn, strict=True):
            if not st.shuffled:
                for s in range(len(code)):
                    hist[s] += count_table(st, draw, s).reshape(b, n_groups, n_codes)
        for name, values in _statistics(hist, n_bins).items():
            if name in out:
                for i in range(n_models):
                    out[name][i, lo:lo + b] = _seed_mean(values[owner == i])
    return out
