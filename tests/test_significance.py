"""Permutation tests of the gaps and the corrections for many tests (biaslab.significance)."""

from itertools import combinations, product

import numpy as np
import pytest
from scipy import stats

from biaslab.metrics import GAPS
from biaslab.significance import _draw_table, adjust, permutation_pvalues

# the gaps compared with parity (base_* is the labels' own disparity)
MODEL_GAPS = [g for g in GAPS if not g.startswith("base_")]


def _null_runs(n_runs=200, n=10000, n_perm=399, groups=2, seed=0, patients=0, per_image=False):
    """p-values of every gap on datasets where the group is independent of (y, ŷ, score).

    With ``patients``, images come from that many patients and decisions lean by patient
    (clustered data); the group is the patient's, or drawn per image with ``per_image``.
    """
    rng = np.random.default_rng(seed)
    runs = []
    for r in range(n_runs):
        ids = rng.integers(0, patients, n) if patients else None
        y = rng.random(n) < 0.4
        lean = rng.beta(2, 2, patients)[ids] if patients else 0.8  # P(ŷ = y)
        d = np.where(rng.random(n) < lean, y, ~y)
        scores = rng.random(n) + 0.3 * y
        g = (rng.integers(0, groups, patients)[ids] if patients and not per_image
             else rng.integers(0, groups, n))
        runs.append(permutation_pvalues(y.astype(int), d.astype(int), g, n_perm=n_perm,
                                        seed=r, scores=scores, bins=8, patients=ids))
    return {name: np.array([p[name] for p in runs]) for name in GAPS}


def _continuous(p, n_perm, seed=0):
    """Exactly uniform p-values on the grid 1/(n_perm + 1), ..., 1 spread over each step:
    continuous uniform ones (the KS test is for continuous distributions)."""
    return p - np.random.default_rng(seed).random(len(p)) / (n_perm + 1)


@pytest.fixture(scope="module")
def null_runs():
    return _null_runs()


@pytest.mark.parametrize("gap", GAPS)
def test_null_pvalues_are_uniform(null_runs, gap):
    p = null_runs[gap]
    assert not np.isnan(p).any()
    assert stats.kstest(_continuous(p, 399), "uniform").pvalue > 0.01, gap


@pytest.mark.slow
@pytest.mark.parametrize("per_image", [False, True])
def test_null_pvalues_are_uniform_with_patients_and_three_groups(per_image):
    """Groups of whole patients (relabelled whole), or drawn per image (relabelled within
    each patient, some patients in one group only)."""
    runs = _null_runs(n_runs=300, n=3000, n_perm=99, groups=3, patients=600, seed=1,
                      per_image=per_image)
    for gap, p in runs.items():
        assert stats.kstest(_continuous(p, 99), "uniform").pvalue > 0.01, gap


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_adjusted_pvalues_reject_at_most_at_the_nominal_rate_under_the_null(null_runs, method):
    """One run tests all its gaps; under the null any rejection is a false one (family-wise
    error for Holm, and for BH, whose false discovery rate is then the family-wise error)."""
    table = np.column_stack([null_runs[g] for g in MODEL_GAPS])  # (runs, gaps)
    # the smallest p is 1 / (n_perm + 1): Holm can reject only if m of them stay below alpha
    assert len(MODEL_GAPS) / 400 < 0.05
    raw = (table <= 0.05).any(1).mean()
    rejected = np.array([(adjust(row, method) <= 0.05).any() for row in table])
    k = int(rejected.sum())
    assert stats.binomtest(k, len(rejected), 0.05, alternative="greater").pvalue > 0.01
    assert rejected.mean() < raw  # uncorrected, the family rejects more often


def test_conditional_gaps_are_tested_within_the_label():
    """Groups with other base rates but decisions that depend on y only: TPR/FPR gaps keep
    their level (permuted within y), DI and SPD are always significant (ŷ does depend on the
    group, through y), and so is the labels' own disparity, but not the excess over it."""
    rng = np.random.default_rng(3)
    runs = []
    for r in range(60):
        n = 2000
        g = rng.integers(0, 2, n)
        y = rng.random(n) < np.where(g == 1, 0.6, 0.4)
        d = np.where(rng.random(n) < 0.9, y, ~y).astype(int)
        runs.append(permutation_pvalues(y.astype(int), d, g, n_perm=99, seed=r))
    for gap in ("disparate_impact", "statistical_parity_difference", "base_disparate_impact"):
        assert all(p[gap] == 0.01 for p in runs), gap
    for gap in ("equal_opportunity_difference", "average_odds_difference",
                "equalized_odds_difference", "worst_group_balanced_accuracy",
                "excess_disparate_impact", "excess_statistical_parity_difference"):
        k = sum(p[gap] <= 0.05 for p in runs)
        assert stats.binomtest(k, len(runs), 0.05, alternative="greater").pvalue > 0.01, gap


def test_a_real_gap_has_a_small_pvalue():
    rng = np.random.default_rng(4)
    n = 1000
    g = rng.integers(0, 3, n)
    y = rng.integers(0, 2, n)
    tpr = np.where(g == 0, 0.6, 0.9)  # group 0 misses positives
    d = np.where(y == 1, rng.random(n) < tpr, rng.random(n) < 0.1).astype(int)
    scores = rng.normal(size=n) + y * np.where(g == 0, 0.5, 2)  # group 0 ranks worse
    p = permutation_pvalues(y, d, g, n_perm=199, scores=scores)
    for gap in ("equal_opportunity_difference", "equalized_odds_difference",
                "worst_group_balanced_accuracy", "auc_gap"):
        assert p[gap] == pytest.approx(1 / 200), gap


def _tpr_gap(y, d, g):
    return abs(d[(y == 1) & (g == 0)].mean() - d[(y == 1) & (g == 1)].mean())


def test_matches_the_exact_permutation_distribution():
    """Against every relabelling of a tiny set: SPD over all images, EOD within y."""
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    d = np.array([0, 0, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0])
    g = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1])
    n = len(y)

    def spd(labels):
        return abs(d[labels == 0].mean() - d[labels == 1].mean())

    all_g = []
    for ones in combinations(range(n), 6):
        labels = np.zeros(n, int)
        labels[list(ones)] = 1
        all_g.append(labels)
    exact_spd = np.mean([spd(lab) >= spd(g) - 1e-12 for lab in all_g])
    within_y = []
    for neg, pos in product(combinations(range(6), 3), combinations(range(6, 12), 3)):
        labels = np.zeros(n, int)
        labels[list(neg + pos)] = 1
        within_y.append(_tpr_gap(y, d, labels) >= _tpr_gap(y, d, g) - 1e-12)
    p = permutation_pvalues(y, d, g, n_perm=20000, seed=5)
    assert p["statistical_parity_difference"] == pytest.approx(exact_spd, abs=0.01)
    assert p["equal_opportunity_difference"] == pytest.approx(np.mean(within_y), abs=0.01)


def test_patients_move_with_all_their_images():
    """Four patients of five images, two per group, all ŷ=1 in one group and 0 in the other:
    two of the six ways to split the patients give |SPD| = 1, p = 1/3. As 20 independent
    images the split looks near impossible by chance."""
    patients = np.repeat(np.arange(4), 5)
    g = np.repeat([0, 0, 1, 1], 5)
    d = np.repeat([1, 1, 0, 0], 5)
    y = np.tile([0, 1, 0, 1, 0], 4)
    by_patient = permutation_pvalues(y, d, g, patients=patients, n_perm=3000, seed=0)
    by_image = permutation_pvalues(y, d, g, n_perm=3000, seed=0)
    assert by_patient["statistical_parity_difference"] == pytest.approx(1 / 3, abs=0.03)
    assert by_image["statistical_parity_difference"] < 0.01


def test_a_patient_in_several_groups_is_relabelled_within_itself():
    """Ten patients with one image in each group, ŷ = the group: each patient can only swap
    its two labels, |SPD| = 1 in 2 of the 2^10 relabellings."""
    patients = np.repeat(np.arange(10), 2)
    g = np.tile([0, 1], 10)
    p = permutation_pvalues(np.zeros(20, int), g, g, patients=patients, n_perm=20000, seed=0)
    assert p["statistical_parity_difference"] == pytest.approx(2 / 1024, abs=8e-4)
    image = permutation_pvalues(np.zeros(20, int), g, g, n_perm=20000, seed=0)
    assert image["statistical_parity_difference"] < 5e-4  # exactly 2 / C(20, 10) = 1.1e-5


def test_image_permutation_is_anticonservative_on_clustered_data():
    """No true gap, but decisions shared within patients (group = a patient attribute): the
    patient permutation keeps its level, the image permutation rejects far too often."""
    rng = np.random.default_rng(7)
    reject = {"patient": [], "image": []}
    for r in range(100):
        n_pat, per = 30, 8
        patients = np.repeat(np.arange(n_pat), per)
        g = np.repeat(rng.integers(0, 2, n_pat), per)
        lean = np.repeat(rng.beta(0.5, 0.5, n_pat), per)  # each patient's own P(ŷ=1)
        d = (rng.random(n_pat * per) < lean).astype(int)
        y = rng.integers(0, 2, n_pat * per)
        for how, ids in (("patient", patients), ("image", None)):
            p = permutation_pvalues(y, d, g, patients=ids, n_perm=99, seed=r)
            reject[how].append(p["statistical_parity_difference"] <= 0.05)
    assert stats.binomtest(sum(reject["patient"]), 100, 0.05,
                           alternative="greater").pvalue > 0.01
    assert np.mean(reject["image"]) > 4 * 0.05  # 0.29 with these seeds


def test_undefined_gaps_have_no_pvalue():
    y = np.array([0, 0, 1, 1, 0, 0, 0, 0])  # group 1 has no positives: its TPR is undefined
    d = np.array([0, 1, 1, 0, 0, 1, 0, 1])
    g = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = permutation_pvalues(y, d, g, n_perm=50)
    for gap in ("equal_opportunity_difference", "average_odds_difference",
                "equalized_odds_difference", "worst_group_balanced_accuracy", "auc_gap"):
        assert np.isnan(p[gap]), gap
    assert 0 < p["statistical_parity_difference"] <= 1
    assert list(p) == list(GAPS)
    off = permutation_pvalues(y, d, g, n_perm=0)
    assert np.isnan(list(off.values())).all()


def test_seeded():
    rng = np.random.default_rng(0)
    y, d, g = rng.integers(0, 2, (3, 200))
    assert permutation_pvalues(y, d, g, seed=3) == permutation_pvalues(y, d, g, seed=3)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"groups": np.zeros(4)}, "at least two groups"),
    ({"y": np.array([0, 1, 2, 1])}, "labels: expected 4 values in"),
    ({"decisions": np.array([0, 1])}, "decisions: expected 4 values"),
    ({"patients": np.array([1, 2, None, 3])}, "patients: expected 4 ids"),
    ({"n_perm": -1}, "evaluate.n_perm: expected an integer >= 0, got -1"),
    ({"scores": np.array([0.1, np.nan, 0.3, 0.4])}, "scores: expected 4 values without NaN"),
])
def test_rejects_bad_input(kwargs, message):
    args = {"y": np.array([0, 1, 0, 1]), "decisions": np.array([0, 1, 1, 1]),
            "groups": np.array([0, 0, 1, 1]), **kwargs}
    with pytest.raises(ValueError, match=message):
        permutation_pvalues(args.pop("y"), args.pop("decisions"), args.pop("groups"), **args)


@pytest.mark.parametrize(("members", "sizes"), [
    ([300, 200, 100], [250, 350]),  # few types: hypergeometric draws
    ([2, 3, 1, 4], [3, 3, 4]),  # many types for the units: shuffled labels
])
def test_tables_have_the_multivariate_hypergeometric_moments(members, sizes):
    members, sizes = np.array(members), np.array(sizes)
    table = _draw_table(members, sizes, 20000, np.random.default_rng(0))
    assert (table.sum(1) == members).all() and (table.sum(2) == sizes).all()
    n, share = members.sum(), members / members.sum()
    mean = sizes[:, None] * share
    var = sizes[:, None] * share * (1 - share) * (n - sizes[:, None]) / (n - 1)
    assert np.allclose(table.mean(0), mean, atol=4 * np.sqrt(var / 20000) + 1e-9)
    assert np.allclose(table.var(0), var, rtol=0.06)


def test_holm_and_bh_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    holm = adjust(p, "holm")  # sorted: 4 * .005, 3 * .01, 2 * .03, then max(.04, .06)
    assert np.allclose(holm[:4], [0.03, 0.06, 0.06, 0.02]) and np.isnan(holm[4])
    bh = adjust(p, "bh")  # 4 / rank * p: .02, .02, .04, .04, then running min from the top
    assert np.allclose(bh[:4], [0.02, 0.04, 0.04, 0.02]) and np.isnan(bh[4])
    assert np.allclose(adjust([0.5, 0.9, 0.8], "holm"), [1, 1, 1])
    assert adjust(np.array([]), "bh").shape == (0,)
    assert np.isnan(adjust([np.nan, np.nan], "holm")).all()


def test_bh_matches_scipy_and_holm_its_definition():
    rng = np.random.default_rng(2)
    p = rng.random(40) ** 3
    p[[3, 17]] = np.nan
    defined = ~np.isnan(p)
    bh = adjust(p, "bh")
    assert np.allclose(bh[defined], stats.false_discovery_control(p[defined], method="bh"))
    order, m = np.argsort(p[defined]), defined.sum()
    by_loop, running = np.empty(m), 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[defined][j]))
        by_loop[j] = running
    assert np.allclose(adjust(p, "holm")[defined], by_loop)
    assert (adjust(p, "holm")[defined] >= bh[defined] - 1e-12).all()  # Holm is stricter


@pytest.mark.parametrize(("p", "method", "message"), [
    ([0.1], "bonferroni", "evaluate.correction: expected one of holm, bh, got 'bonferroni'"),
    ([1.2], "holm", r"pvalues: expected values in \[0, 1\]"),
])
def test_adjust_rejects_bad_input(p, method, message):
    with pytest.raises(ValueError, match=message):
        adjust(p, method)
