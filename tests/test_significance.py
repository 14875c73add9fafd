"""Permutation tests of the gaps (biaslab.fairness.significance, its draws in
biaslab.fairness.relabellings) and the corrections for many tests (biaslab.fairness.corrections)."""

from itertools import combinations, product

import numpy as np
import pytest
from scipy import stats

from biaslab.fairness.corrections import adjust
from biaslab.fairness.metrics import GAPS
from biaslab.fairness.relabellings import draw_table
from biaslab.fairness.significance import permutation_pvalues

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
    # several training seeds: decisions (seeds, n), scores of the same shape
    ({"decisions": np.ones((3, 5), int)}, r"decisions: expected 4 values like labels, or one "
     r"row of 4 per training seed \(shape \(seeds, 4\)\), got shape \(3, 5\)"),
    ({"decisions": np.ones((2, 2, 4), int)}, r"decisions: .* got shape \(2, 2, 4\)"),
    ({"decisions": np.ones((0, 4), int)}, r"decisions: .* got shape \(0, 4\)"),
    ({"decisions": np.array([[0, 1, 1, 1], [0, 1, 1, 2]])},
     r"decisions: expected 4 values in \{0, 1\}, got 2 at image 3 of seed row 1"),
    ({"decisions": np.ones((2, 4), int), "scores": np.ones(4)},
     r"scores: expected the shape of decisions, \(2, 4\) \(one row per training seed\), "
     r"got shape \(4,\)"),
    ({"decisions": np.ones((2, 4), int), "scores": [[0.1, 0.2, 0.3, 0.4], [0.1, np.nan, 0.3, 0]]},
     "scores: expected 4 values without NaN, like labels, got NaN at image 1 of seed row 1"),
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
    table = draw_table(members, sizes, 20000, np.random.default_rng(0))
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


# --- several training seeds: decisions and scores (seeds, n) on the same images ---


def _seeded_data(n=600, seed=11):
    """Labels, decisions, 3 groups, patients (a group per patient for half the images, per
    image for the others) and scores."""
    rng = np.random.default_rng(seed)
    patients = rng.integers(0, n // 4, n)
    g = np.where(rng.random(n) < 0.5, rng.integers(0, 3, n // 4)[patients],
                 rng.integers(0, 3, n))
    y = rng.integers(0, 2, n)
    d = np.where(rng.random(n) < 0.75 - 0.1 * g, y, 1 - y)
    return y, d, g, patients, rng.normal(size=n) + y * (1 + 0.3 * g)


# p-values x 200 of 1-D input on _seeded_data, as computed before seeds were supported: the
# 1-D test is bit for bit the same (the same draws, in the same order)
PINNED = {
    "patients": [96, 95, 5, 136, 22, 3, 1, 100, 181, 102, 182],
    "images": [111, 111, 1, 135, 1, 1, 1, 103, 122, 102, 122],
}


@pytest.mark.parametrize("by", ["patients", "images"])
def test_one_seed_gives_the_pvalues_it_always_gave(by):
    y, d, g, patients, scores = _seeded_data()
    kwargs = {"patients": patients if by == "patients" else None, "n_perm": 199, "seed": 2,
              "bins": 16}
    p = permutation_pvalues(y, d, g, scores=scores, **kwargs)
    assert [p[gap] * 200 for gap in GAPS] == pytest.approx(PINNED[by], abs=1e-9)
    assert permutation_pvalues(y, d[None], g, scores=scores[None], **kwargs) == p  # (1, n)


@pytest.mark.parametrize(("m", "by"), [(2, "patients"), (3, "images"), (5, "patients")])
def test_identical_seeds_give_exactly_the_pvalues_of_one(m, by):
    y, d, g, patients, scores = _seeded_data(seed=m)
    kwargs = {"patients": patients if by == "patients" else None, "n_perm": 199, "seed": 1,
              "bins": 16}
    one = permutation_pvalues(y, d, g, scores=scores, **kwargs)
    assert permutation_pvalues(y, np.tile(d, (m, 1)), g, scores=np.tile(scores, (m, 1)),
                               **kwargs) == one


def _null_seed_runs(n_runs=100, n=500, n_perm=199, m=3):
    """p-values with m seeds, the group independent of everything. The seeds agree on most
    images, like models trained with several seeds: each takes an image's shared decision
    with probability 0.9 (else decides at random) and adds its own noise to a shared score.
    Their gaps are then strongly correlated, and a test permuting each seed on its own is
    anti-conservative: on these data its p-values of SPD, the worst-group balanced accuracy
    and the AUC gap fail the KS test below."""
    rng = np.random.default_rng(8)
    runs = []
    for r in range(n_runs):
        y = rng.random(n) < 0.4
        shared = np.where(rng.random(n) < 0.8, y, ~y)
        d = np.where(rng.random((m, n)) < 0.9, shared, rng.random((m, n)) < 0.5).astype(int)
        scores = rng.random(n) + 0.3 * y + 0.2 * rng.random((m, n))
        g = rng.integers(0, 2, n)
        runs.append(permutation_pvalues(y.astype(int), d, g, n_perm=n_perm, seed=r,
                                        scores=scores, bins=8))
    return np.array([[p[gap] for gap in GAPS] for p in runs])  # (runs, gaps)


@pytest.fixture(scope="module")
def null_seed_runs():
    return _null_seed_runs()


def test_null_pvalues_with_seeds_are_uniform(null_seed_runs):
    assert not np.isnan(null_seed_runs).any()
    for gap, p in zip(GAPS, null_seed_runs.T, strict=True):
        assert stats.kstest(_continuous(p, 199), "uniform").pvalue > 0.01, gap


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_adjusted_pvalues_with_seeds_reject_at_most_at_the_nominal_rate(null_seed_runs,
                                                                         method):
    table = null_seed_runs[:, [GAPS.index(g) for g in MODEL_GAPS]]
    assert len(MODEL_GAPS) / 200 < 0.05  # Holm can reject at all
    rejected = np.array([(adjust(row, method) <= 0.05).any() for row in table])
    assert stats.binomtest(int(rejected.sum()), len(rejected), 0.05,
                           alternative="greater").pvalue > 0.01
    assert rejected.mean() < (table <= 0.05).any(1).mean()


def test_a_real_gap_in_every_seed_has_a_small_pvalue():
    rng = np.random.default_rng(4)
    n, m = 600, 3
    g = rng.integers(0, 2, n)
    y = rng.integers(0, 2, n)
    tpr = np.where(g == 0, 0.6, 0.9)  # every seed's model misses group 0's positives
    d = np.where(y == 1, rng.random((m, n)) < tpr, rng.random((m, n)) < 0.1).astype(int)
    scores = rng.normal(size=(m, n)) + y * np.where(g == 0, 0.5, 2)
    p = permutation_pvalues(y, d, g, n_perm=199, scores=scores)
    for gap in ("equal_opportunity_difference", "equalized_odds_difference",
                "worst_group_balanced_accuracy", "auc_gap"):
        assert p[gap] == pytest.approx(1 / 200), gap


def test_seeds_move_with_the_patients():
    """The four-patient case of test_patients_move_with_all_their_images with a second seed
    (patient rates 0.8, 1, 0, 0.2): the observed split and its mirror still give the largest
    mean |SPD|, p = 2/6; image by image it looks near impossible by chance."""
    patients = np.repeat(np.arange(4), 5)
    g = np.repeat([0, 0, 1, 1], 5)
    d = np.stack([np.repeat([1, 1, 0, 0], 5), np.r_[1, 1, 1, 1, 0, [1] * 5, [0] * 5,
                                                     1, 0, 0, 0, 0]])
    y = np.tile([0, 1, 0, 1, 0], 4)
    by_patient = permutation_pvalues(y, d, g, patients=patients, n_perm=3000, seed=0)
    assert by_patient["statistical_parity_difference"] == pytest.approx(1 / 3, abs=0.03)
    by_image = permutation_pvalues(y, d, g, n_perm=3000, seed=0)
    assert by_image["statistical_parity_difference"] < 0.01


def test_one_relabelling_serves_every_seed_within_a_patient():
    """Ten patients with one image in each group (blocks); seed 0 decides ŷ = the group,
    seed 1 the same except for patient 0, reversed. Relabelled jointly, 4 of the 2^10
    relabellings reach the observed mean |SPD| (0.9): p = 4/1024. Relabelled independently
    per seed it would be 0.00008."""
    patients = np.repeat(np.arange(10), 2)
    g = np.tile([0, 1], 10)
    d = np.stack([g, np.r_[1, 0, g[2:]]])
    p = permutation_pvalues(np.zeros(20, int), d, g, patients=patients, n_perm=20000, seed=0)
    assert p["statistical_parity_difference"] == pytest.approx(4 / 1024, abs=1e-3)


def test_a_gap_undefined_for_one_seed_has_no_pvalue():
    y, d, g = np.random.default_rng(0).integers(0, 2, (3, 200))
    d = np.stack([d, np.zeros_like(d)])  # seed 1 selects no one: its DI is 0/0
    assert not np.isnan(permutation_pvalues(y, d[0], g)["disparate_impact"])
    p = permutation_pvalues(y, d, g)
    assert np.isnan(p["disparate_impact"])
    assert not np.isnan(p["statistical_parity_difference"])  # SPD 0 - 0 is defined
