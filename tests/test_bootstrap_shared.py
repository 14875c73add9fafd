"""biaslab.fairness.bootstrap's shared patient draws: one draw of every patient's multiplicity
per resample serves every model scored on the same images and groups."""

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from biaslab.fairness import bootstrap, evaluate
from biaslab.fairness.bootstrap import (
    ECE_BINS,
    SharedDraws,
    auc_from_bins,
    binned_resamples,
    patient_draws,
    score_bins,
)
from biaslab.fairness.evaluate import evaluate_seeds
from biaslab.fairness.metrics import PER_GROUP, group_report


def _clustered(n_patients=400, n_groups=3, seed=0, split=0.1):
    """Rows of patients with 1 to 6 images; the group is the patient's, except for a share
    ``split`` of patients whose images each draw their own (patients in several groups)."""
    rng = np.random.default_rng(seed)
    units = np.repeat(np.arange(n_patients), 1 + rng.integers(0, 6, n_patients))
    codes = rng.integers(0, n_groups, n_patients)[units]
    mixed = (rng.random(n_patients) < split)[units]
    codes = np.where(mixed, rng.integers(0, n_groups, len(units)), codes)
    scores = rng.random(len(units))
    bins, n_bins = score_bins(scores, 16)
    cells = rng.integers(0, 8, len(units))
    return dict(codes=codes, cells=cells, bins=bins, scores=scores, n_groups=n_groups,
                n_bins=n_bins), units


def _weighted_reference(codes, cells, bins, scores, n_groups, n_bins, weights):
    """Statistics of rows weighted by ``weights`` (rows, resamples), row by row: the
    definition, with each row's score replaced by its cell's mean (as the bootstrap does)."""
    fine = (codes * n_bins + bins) * 8 + cells
    _, inverse, count = np.unique(fine, return_inverse=True, return_counts=True)
    mean_score = (np.bincount(inverse, weights=scores) / count)[inverse]
    y, coarse = (cells // 2) % 2, bins * ECE_BINS // n_bins
    n_stats = 8 + 2 * n_bins + 3 * ECE_BINS
    per_row = np.zeros((len(codes), n_stats))
    rows = np.arange(len(codes))
    per_row[rows, cells] = 1
    per_row[rows, 8 + bins + n_bins * (1 - y)] = 1
    ece = 8 + 2 * n_bins
    per_row[rows, ece + coarse] = 1
    per_row[rows, ece + ECE_BINS + coarse] = y
    per_row[rows, ece + 2 * ECE_BINS + coarse] = mean_score
    out = np.zeros((weights.shape[1], n_groups, n_stats))
    for g in range(n_groups):
        out[:, g] = weights[codes == g].T @ per_row[codes == g]
    return out


def test_shared_resamples_are_the_rows_weighted_by_their_patients_draws(monkeypatch):
    data, units = _clustered()
    n_bins = data["n_bins"]
    draws = patient_draws(units, data["codes"], data["n_groups"], 60, seed=1)
    monkeypatch.setattr(bootstrap, "CHUNK", 5000)  # several chunks of resamples
    ours = binned_resamples(**data, n_boot=60, seed=99, units=units, draws=draws)
    reference = _weighted_reference(**data, weights=draws[units].astype(float))
    assert set(ours) == {"counts", "auc", "ece_n", "ece_pos", "ece_score"}
    np.testing.assert_array_equal(ours["counts"], reference[..., :8])
    ece = np.concatenate([ours[k] for k in ("ece_n", "ece_pos", "ece_score")], axis=-1)
    np.testing.assert_allclose(ece, reference[..., 8 + 2 * n_bins:], rtol=1e-12)
    # the AUC of each group, then of all rows, from the positives and negatives per bin
    pos, neg = reference[..., 8:8 + n_bins], reference[..., 8 + n_bins:8 + 2 * n_bins]
    auc = auc_from_bins(np.concatenate([pos, pos.sum(1, keepdims=True)], 1),
                        np.concatenate([neg, neg.sum(1, keepdims=True)], 1))
    np.testing.assert_allclose(ours["auc"], auc, rtol=1e-12)
    assert ours["auc"].shape == (60, data["n_groups"] + 1) and np.isfinite(auc).all()


def test_draws_keep_every_stratum_and_every_group():
    data, units = _clustered(n_patients=300, split=0.3)
    codes, n_groups = data["codes"], data["n_groups"]
    draws = patient_draws(units, codes, n_groups, 200, seed=0)
    assert draws.dtype == np.uint8 and draws.shape == (300, 200)
    in_group = np.zeros((300, n_groups), bool)
    in_group[units, codes] = True
    strata = np.unique(in_group, axis=0, return_inverse=True)[1].ravel()
    for s in np.unique(strata):  # each stratum keeps its number of patients
        np.testing.assert_array_equal(draws[strata == s].sum(0), (strata == s).sum())
    # every group keeps an image in every resample, and the draws vary
    images = np.stack([np.bincount(codes, weights=draws[units, b], minlength=n_groups)
                       for b in range(200)])
    assert (images > 0).all() and draws.std(1).max() > 0
    # a patient brings all its images: the rows of one patient always weigh the same
    assert (draws[units][np.r_[False, units[1:] == units[:-1]]]
            == draws[units][np.r_[units[1:] == units[:-1], False]]).all()


def test_draws_do_not_depend_on_the_chunk_size_and_follow_the_seed(monkeypatch):
    data, units = _clustered()
    whole = patient_draws(units, data["codes"], 3, 90, seed=2)
    monkeypatch.setattr(bootstrap, "CHUNK", 700)  # a few resamples per chunk
    np.testing.assert_array_equal(whole, patient_draws(units, data["codes"], 3, 90, seed=2))
    res = binned_resamples(**data, n_boot=90, seed=0, units=units, draws=whole)
    monkeypatch.setattr(bootstrap, "CHUNK", 1 << 20)
    again = binned_resamples(**data, n_boot=90, seed=0, units=units, draws=whole)
    for key, value in res.items():
        np.testing.assert_array_equal(value, again[key])
    assert not np.array_equal(whole, patient_draws(units, data["codes"], 3, 90, seed=3))


def test_shared_draws_are_made_once_and_bounded(monkeypatch):
    data, units = _clustered()
    made = []
    monkeypatch.setattr(bootstrap, "patient_draws",
                        lambda *a: made.append(a) or np.zeros((400, 10), np.uint8))
    shared = SharedDraws(max_bytes=2 * 400 * 10)
    a = shared.get(units, data["codes"], 3, 10, 0)
    assert shared.get(units.copy(), data["codes"].copy(), 3, 10, 0) is a and len(made) == 1
    shared.get(units, data["codes"], 3, 10, 1)  # another seed, other draws
    shared.get(units, data["codes"], 3, 10, 2)  # a third: the oldest is dropped
    assert len(made) == 3 and len(shared._draws) == 2
    shared.get(units, data["codes"], 3, 10, 0)
    assert len(made) == 4


def test_counts_too_large_for_float32_are_counted_in_float64(monkeypatch):
    data, units = _clustered()
    draws = patient_draws(units, data["codes"], 3, 40, seed=0)
    single = binned_resamples(**data, n_boot=40, seed=0, units=units, draws=draws)
    monkeypatch.setattr(bootstrap, "FLOAT32_WHOLE", 100)  # as if patients were millions
    double = binned_resamples(**data, n_boot=40, seed=0, units=units, draws=draws)
    for key, value in single.items():
        np.testing.assert_array_equal(value, double[key])


def test_shared_resamples_memory_is_bounded(monkeypatch):
    """Never a resamples x groups x bins array: 2,000 x 2 x 512 float64 would be 16 MiB."""
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(20_000), 2)
    codes, cells = rng.integers(0, 2, 20_000)[units], rng.integers(0, 8, 40_000)
    scores = rng.random(40_000)
    bins, n_bins = score_bins(scores, 256)
    draws = patient_draws(units, codes, 2, 2000, seed=0)  # 40 MB, made once, outside
    monkeypatch.setattr(bootstrap, "CHUNK", 1 << 16)
    tracemalloc.start()
    res = binned_resamples(codes, cells, bins, scores, 2, n_bins, 2000, 0, units=units,
                           draws=draws)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res["auc"].shape == (2000, 3) and peak < 8 * 2**20


def test_draws_of_the_wrong_shape_are_refused():
    data, units = _clustered()
    draws = patient_draws(units, data["codes"], 3, 20, seed=0)
    with pytest.raises(ValueError, match=r"draws: expected \(at least 400 patients, 30 "
                                         r"resamples\), got shape \(400, 20\)"):
        binned_resamples(**data, n_boot=30, seed=0, units=units, draws=draws)


def _models(n_models=3, n_patients=250, seed=0, images=2):
    """Labels, groups, patients (clustered: a patient effect; 1 + Poisson(``images``) images
    each) and several models' decisions and scores on the same images."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), 1 + rng.poisson(images, n_patients))
    group = rng.integers(0, 2, n_patients)[patient]
    effect = rng.normal(0, 1.5, n_patients)[patient]
    y = (rng.random(len(patient)) < expit(-0.3 + effect)).astype(int)
    models = []
    for _ in range(n_models):
        score = expit(1.5 * (2 * y - 1) + effect + 0.3 * group + rng.normal(0, 1, len(y)))
        models.append(((score > 0.5).astype(int), score))
    return y, group, patient, models


def test_a_model_gets_the_same_intervals_whoever_shares_its_draws():
    y, g, patient, models = _models()
    alone = group_report(y, models[1][0], g, scores=models[1][1], patients=patient,
                         n_boot=200, seed=4, shared=SharedDraws())
    shared = SharedDraws()
    for d, s in models:
        last = group_report(y, d, g, scores=s, patients=patient, n_boot=200, seed=4,
                            shared=shared)
        if d is models[1][0]:
            together = last
    assert len(shared._draws) == 1
    for a, b in zip(alone, together, strict=True):
        pd.testing.assert_frame_equal(a, b)
    # the points do not depend on the draws; the intervals do, and move
    plain = group_report(y, models[1][0], g, scores=models[1][1], patients=patient,
                         n_boot=200, seed=4)
    pd.testing.assert_series_equal(plain[0]["accuracy"], alone[0]["accuracy"])
    assert not plain[0]["accuracy_lo"].equals(alone[0]["accuracy_lo"])


def _interval_gaps(a, b, sd):
    """|difference| of the interval ends of two reports, in bootstrap standard deviations."""
    (per_group_a, between_a), (per_group_b, between_b) = a, b
    out = [np.abs(per_group_a[m + end] - per_group_b[m + end]) / sd[m]
           for m in PER_GROUP for end in ("_lo", "_hi")]
    out += [np.abs(between_a[end] - between_b[end]) / sd["gaps"] for end in ("lo", "hi")]
    return np.concatenate([np.asarray(x, float) for x in out])


def test_shared_intervals_agree_with_the_per_call_draws_within_monte_carlo_error():
    """The same bootstrap, other draws: with B = 1000 an interval end (a 2.5% or 97.5%
    quantile of the resamples) has a Monte-Carlo standard error of about 0.085 bootstrap
    standard deviations, 0.12 for the difference of two independent ones (median |difference|
    0.08). Every end of every figure agrees within 4.5 of those (0.55 sd), and their median
    within 0.15 sd. The image bootstrap on the same clustered rows (too narrow) does not: the
    check can fail."""
    y, g, patient, models = _models(n_models=1, n_patients=400, seed=0, images=5)
    d, s = models[0]
    kwargs = dict(scores=s, patients=patient, n_boot=1000, seed=0, bins=32)
    old = group_report(y, d, g, **kwargs)
    new = group_report(y, d, g, shared=SharedDraws(), **kwargs)
    image = group_report(y, d, g, resample="image", **kwargs)
    # bootstrap sd of each figure, from the interval width of the old design (95%: 3.92 sd)
    sd = {m: (old[0][m + "_hi"] - old[0][m + "_lo"]).to_numpy() / 3.92 for m in PER_GROUP}
    sd["gaps"] = (old[1]["hi"] - old[1]["lo"]).to_numpy() / 3.92
    agree = _interval_gaps(old, new, sd)
    agree = agree[np.isfinite(agree)]
    assert len(agree) > 40 and agree.max() < 0.55 and np.median(agree) < 0.15
    differ = _interval_gaps(old, image, sd)
    assert np.nanmax(differ) > 0.8 and np.nanmedian(differ) > 0.15


def _decisions(models, n):
    """Two schemes, two training seeds each, the same test images."""
    rows = np.arange(n)
    return {scheme: {seed: pd.DataFrame({
        "row": rows, "split": "test", "method": "fixed", "threshold": 0.5,
        "score": models[2 * i + seed][1], "decision": models[2 * i + seed][0]})
        for seed in (0, 1)} for i, scheme in enumerate(("none", "reweigh"))}


def test_evaluate_draws_the_patients_once_per_attribute(monkeypatch):
    y, g, patient, models = _models(n_models=4)
    attributes = pd.DataFrame({"row": np.arange(len(y)), "label": y, "sex": g,
                               "age": (patient % 3).astype(str),
                               "patient_id": patient.astype(str)})
    made = []
    real = bootstrap.patient_draws
    monkeypatch.setattr(bootstrap, "patient_draws", lambda *a: made.append(a) or real(*a))
    decisions = _decisions(models, len(y))
    both = evaluate_seeds(decisions, attributes, ["sex", "age"], n_boot=50)
    assert len(made) == 3  # sex, age, sex&age: for 2 schemes x 2 seeds
    # one scheme alone: the same figures as with the other beside it
    alone = evaluate_seeds({"none": decisions["none"]}, attributes, ["sex", "age"], n_boot=50)
    cols = [c for c in alone.per_seed.columns if c not in ("warning",)]
    pd.testing.assert_frame_equal(alone.per_seed[cols],
                                  both.per_seed[both.per_seed["scheme"] == "none"][cols])
    assert evaluate.SharedDraws is SharedDraws


def test_no_resamples_with_shared_draws():
    y, g, patient, models = _models(n_models=1)
    shared = SharedDraws()
    per_group, between = group_report(y, models[0][0], g, scores=models[0][1],
                                      patients=patient, n_boot=0, shared=shared)
    assert per_group["accuracy_lo"].isna().all() and between["lo"].isna().all()
    assert not shared._draws
