"""Per-group recalibration (biaslab.fairness.thresholds.calibrate): temperature scaling and
isotonic regression fitted per group on validation remove a calibration gap between groups."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from biaslab.fairness.bootstrap import ece_from_bins
from biaslab.fairness.thresholds import (
    GroupIsotonic,
    GroupTemperatureScaling,
    NotApplicable,
    decide_methods,
)


def miscalibrated(n=6000, seed=0):
    """Two groups with the same ranking power; group b's scores are over-confident (true
    logit z, reported logit 3z) and group a's are calibrated."""
    rng = np.random.default_rng(seed)
    g = rng.choice(np.array(["a", "b"], dtype=object), n)
    z = rng.normal(0, 1.5, n)
    y = (rng.random(n) < expit(z)).astype(int)
    scores = expit(np.where(g == "b", 3 * z, z))
    return scores, y, g


def ece(scores, y, bins=10):
    k = np.minimum((scores * bins).astype(int), bins - 1)
    return float(ece_from_bins(np.bincount(k, minlength=bins),
                               np.bincount(k, weights=y, minlength=bins),
                               np.bincount(k, weights=scores, minlength=bins)))


@pytest.mark.parametrize("cls", [GroupTemperatureScaling, GroupIsotonic])
def test_recalibration_closes_the_calibration_gap_on_new_data(cls):
    scores, y, g = miscalibrated(seed=0)
    test_scores, test_y, test_g = miscalibrated(seed=1)
    before = {k: ece(test_scores[test_g == k], test_y[test_g == k]) for k in "ab"}
    post = cls().fit(scores, y, g)
    calibrated = post.calibrate(test_scores, test_g)
    after = {k: ece(calibrated[test_g == k], test_y[test_g == k]) for k in "ab"}
    assert before["b"] > 0.08 and before["b"] - before["a"] > 0.05  # the gap to close
    assert after["b"] < 0.04 and abs(after["b"] - after["a"]) < 0.03


def test_temperature_finds_the_over_confidence_and_keeps_the_decisions_at_one_half():
    scores, y, g = miscalibrated()
    post = GroupTemperatureScaling().fit(scores, y, g)
    temps = {k: v["temperature"] for k, v in post.params_()["groups"].items()}
    assert temps["a"] == pytest.approx(1.0, abs=0.15) and temps["b"] == pytest.approx(3, rel=0.15)
    # a monotone map through (0.5, 0.5): at threshold 0.5 the decisions are the model's own
    assert np.array_equal(post.predict(scores, g), (scores >= 0.5).astype(np.int8))
    assert np.allclose(post.threshold_of(scores, g), 0.5)


@pytest.mark.parametrize("cls", [GroupTemperatureScaling, GroupIsotonic])
def test_the_threshold_on_the_score_scale_gives_the_same_decisions(cls):
    scores, y, g = miscalibrated(seed=2)
    post = cls(threshold=0.3).fit(scores, y, g)
    new, _, new_g = miscalibrated(seed=3)
    decided = post.predict(new, new_g)
    by_threshold = (new >= post.threshold_of(new, new_g)).astype(np.int8)
    assert np.mean(decided != by_threshold) < 0.002  # only ties at a knot may differ


def test_the_decisions_file_keeps_the_recalibrated_score():
    scores, y, g = miscalibrated(n=2000)
    frame = pd.DataFrame({"row": np.arange(len(y)), "score": scores, "label": y, "s": g})
    decisions, params = decide_methods(["fixed", "isotonic"], frame.iloc[:1000],
                                       frame.iloc[1000:], ["s"])
    iso = decisions[decisions["method"] == "isotonic"]
    fixed = decisions[decisions["method"] == "fixed"]
    assert np.array_equal(fixed["score"], scores)
    assert not np.allclose(iso["score"], scores) and iso["score"].between(0, 1).all()
    assert np.array_equal(iso["decision"], (iso["score"] >= 0.5).astype(np.int8))
    assert set(params["isotonic"]["groups"]) == {"s=a", "s=b"}


@pytest.mark.parametrize("cls", [GroupTemperatureScaling, GroupIsotonic])
def test_a_group_with_one_class_is_not_applicable_with_the_reason(cls):
    scores = np.array([0.2, 0.7, 0.4, 0.9, 0.3, 0.6])
    y = np.array([0, 1, 0, 1, 0, 0])
    g = np.array(["a", "a", "a", "a", "b", "b"], dtype=object)
    with pytest.raises(NotApplicable, match="group b has one class in the fit data"):
        cls().fit(scores, y, g)
    with pytest.raises(NotApplicable, match="no row"):
        cls().fit(np.array([]), np.array([], dtype=int), np.array([], dtype=object))
