"""biaslab.fairness.bootstrap: the image bootstrap as before, the patient (cluster) bootstrap,
coverage."""

import tracemalloc

import numpy as np
import pytest
from scipy.special import expit

from biaslab.fairness import bootstrap
from biaslab.fairness.bootstrap import ECE_BINS, binned_resamples, score_bins
from biaslab.fairness.metrics import group_report


def _reference_resamples(codes, cells, bins, scores, n_groups, n_bins, n_boot, seed):
    """The image bootstrap as it was before patients (biaslab 567e9c5), kept to compare with."""
    def onehot(index, size, values=None):
        out = np.zeros((len(index), size))
        out[np.arange(len(index)), index] = 1.0 if values is None else values
        return out

    rng = np.random.default_rng(seed)
    fine = (codes * n_bins + bins) * 8 + cells
    occupied, inverse, count = np.unique(fine, return_inverse=True, return_counts=True)
    mean_score = np.bincount(inverse, weights=scores) / count
    o_group, o_bin, o_cell = occupied // (8 * n_bins), occupied // 8 % n_bins, occupied % 8
    o_y = (o_cell // 2) % 2
    o_coarse = o_bin * ECE_BINS // n_bins
    mapping = np.concatenate([
        onehot(o_cell, 8), onehot(o_bin, n_bins, o_y), onehot(o_bin, n_bins, 1 - o_y),
        onehot(o_coarse, ECE_BINS), onehot(o_coarse, ECE_BINS, o_y),
        onehot(o_coarse, ECE_BINS, mean_score),
    ], axis=1)
    stats = np.zeros((n_boot, n_groups, mapping.shape[1]))
    for g in range(n_groups):
        mine = np.flatnonzero(o_group == g)
        n_g = count[mine].sum()
        draws = rng.multinomial(n_g, count[mine] / n_g, size=n_boot)
        stats[:, g] = draws @ mapping[mine]
    return stats


def _rows(n=3000, n_groups=3, seed=0, n_patients=None):
    """Groups, cells, score bins and scores; with ``n_patients``, patient ids too."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    bins, n_bins = score_bins(scores, 32)
    data = dict(codes=rng.integers(0, n_groups, n), cells=rng.integers(0, 8, n), bins=bins,
                scores=scores, n_groups=n_groups, n_bins=n_bins)
    return data, (None if n_patients is None else rng.integers(0, n_patients, n))


def _flat(res):
    return np.concatenate(list(res.values()), axis=-1)


def test_image_bootstrap_is_unchanged():
    data, _ = _rows()
    ours = _flat(binned_resamples(**data, n_boot=200, seed=3))
    np.testing.assert_array_equal(ours, _reference_resamples(**data, n_boot=200, seed=3))


def test_patients_of_one_image_are_images():
    """Without repeated patients, the patient bootstrap is the image bootstrap, to the bit."""
    data, _ = _rows()
    images = _flat(binned_resamples(**data, n_boot=100, seed=1))
    ids = np.random.default_rng(0).permutation(len(data["codes"]))
    np.testing.assert_array_equal(images, _flat(binned_resamples(**data, n_boot=100, seed=1,
                                                                 units=ids)))


def test_a_patient_is_resampled_whole():
    # every patient: three images in one cell of one group -> every resampled count is 3 k
    rng = np.random.default_rng(0)
    patient = np.repeat(np.arange(200), 3)
    codes, cells = rng.integers(0, 2, 200)[patient], rng.integers(0, 8, 200)[patient]
    zeros = np.zeros(600, int)
    res = binned_resamples(codes, cells, zeros, zeros.astype(float), 2, 1, 300, 0,
                           units=patient)
    assert (res["counts"] % 3 == 0).all()
    # each group keeps its number of patients, hence of images; the counts vary
    np.testing.assert_array_equal(res["counts"].sum(-1), [[(codes == 0).sum(),
                                                           (codes == 1).sum()]] * 300)
    assert res["counts"].std(0).min() > 0


def test_a_patient_in_two_groups_brings_its_images_in_both():
    """S is drawn per image: a patient's images fall in s=0 and s=1 and move together."""
    rng = np.random.default_rng(1)
    cell = rng.integers(0, 8, 150)  # one image per group, in the same cell
    patient = np.r_[np.arange(150), np.arange(150)]
    codes = np.r_[np.zeros(150, int), np.ones(150, int)]
    zeros = np.zeros(300, int)
    res = binned_resamples(codes, np.r_[cell, cell], zeros, zeros.astype(float), 2, 1, 200, 0,
                           units=patient)
    np.testing.assert_array_equal(res["counts"][:, 0], res["counts"][:, 1])
    assert res["counts"][:, 0].std(0).max() > 0


def test_mixed_strata_keep_every_group_filled():
    # patients only in group 0, only in group 1, and in both: no resample empties a group
    rng = np.random.default_rng(2)
    patient = np.r_[np.arange(5), np.arange(5, 10), np.arange(10, 12), np.arange(10, 12)]
    codes = np.r_[np.zeros(5, int), np.ones(5, int), np.zeros(2, int), np.ones(2, int)]
    cells = rng.integers(0, 8, len(patient))
    zeros = np.zeros(len(patient), int)
    res = binned_resamples(codes, cells, zeros, zeros.astype(float), 2, 1, 500, 0,
                           units=patient)
    # each stratum keeps its patients: 5 + 2 images in group 0, 5 + 2 in group 1
    np.testing.assert_array_equal(res["counts"].sum(-1), [[7, 7]] * 500)


def test_patient_bootstrap_ignores_row_order_and_patient_names():
    data, patients = _rows(n_patients=700)
    a = _flat(binned_resamples(**data, n_boot=100, seed=4, units=patients))
    perm = np.random.default_rng(9).permutation(len(patients))
    renamed = (patients * 7919 + 13) % 100_003  # other ids, the same patients
    shuffled = {k: v[perm] if isinstance(v, np.ndarray) else v for k, v in data.items()}
    b = _flat(binned_resamples(**shuffled, n_boot=100, seed=4, units=renamed[perm]))
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert not np.array_equal(a, _flat(binned_resamples(**data, n_boot=100, seed=5,
                                                        units=patients)))


def test_patient_bootstrap_does_not_depend_on_the_chunk_size(monkeypatch):
    data, patients = _rows(n_patients=500)
    whole = _flat(binned_resamples(**data, n_boot=90, seed=2, units=patients))
    monkeypatch.setattr(bootstrap, "CHUNK", 3000)  # a few resamples per chunk
    np.testing.assert_array_equal(whole, _flat(binned_resamples(**data, n_boot=90, seed=2,
                                                                units=patients)))


def test_patient_bootstrap_memory_is_bounded(monkeypatch):
    """Never a resamples x patients matrix: 200 x 40,000 int64 would be 61 MiB."""
    rng = np.random.default_rng(0)
    patient = np.repeat(np.arange(40_000), 2)
    codes, cells = rng.integers(0, 2, 80_000), rng.integers(0, 8, 80_000)
    zeros = np.zeros(80_000, int)
    monkeypatch.setattr(bootstrap, "CHUNK", 1 << 16)
    tracemalloc.start()
    binned_resamples(codes, cells, zeros, zeros.astype(float), 2, 1, 200, 0, units=patient)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * 2**20


def test_zero_resamples_with_patients():
    data, patients = _rows(n_patients=50)
    res = binned_resamples(**data, n_boot=0, seed=0, units=patients)
    assert res["counts"].shape == (0, 3, 8) and res["pos"].shape[:2] == (0, 3)


# ---------------------------------------------------------------- coverage
A, SD, PATIENTS = (-0.5, 0.3), 1.5, 60  # group intercepts, patient effect, patients per group


def _true_gap() -> float:
    """P(ŷ=1 | g=0) - P(ŷ=1 | g=1) = E[expit(a_0 + u)] - E[expit(a_1 + u)], u ~ N(0, SD²)."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    return float(w @ expit(A[0] + SD * x) - w @ expit(A[1] + SD * x))


def _covers(seed: int, n_boot: int) -> list[bool]:
    """One simulated test set, clustered: does each design's 95% SPD interval hold the truth?"""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(2 * PATIENTS), 1 + rng.poisson(3, 2 * PATIENTS))
    group = (patient >= PATIENTS).astype(int)
    effect = rng.normal(0, SD, 2 * PATIENTS)[patient]  # shared by a patient's images
    decisions = (rng.random(len(patient)) < expit(np.array(A)[group] + effect)).astype(int)
    labels = rng.integers(0, 2, len(patient))
    truth, out = _true_gap(), []
    for resample in ("patient", "image"):
        _, between = group_report(labels, decisions, group, patients=patient, resample=resample,
                                  n_boot=n_boot, seed=seed)
        spd = between.set_index("metric").loc["statistical_parity_difference"]
        out.append(spd["lo"] <= truth <= spd["hi"])
    return out


def test_patient_intervals_cover_and_image_intervals_do_not_quick():
    covered = np.array([_covers(seed, n_boot=400) for seed in range(40)]).mean(0)
    assert covered[0] >= 0.9
    assert covered[1] <= covered[0] - 0.1


@pytest.mark.slow
def test_patient_intervals_cover_the_true_gap():
    """200 simulations: the patient bootstrap's 95% interval covers the true gap >= 92% of
    the time; the image bootstrap, which treats a patient's images as independent, does not."""
    covered = np.array([_covers(seed, n_boot=1000) for seed in range(200)]).mean(0)
    assert covered[0] >= 0.92
    assert covered[1] < 0.9
