"""biaslab.fairness.thresholds: every threshold method, the registry and the decisions of a
table."""

import json
import re
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

import stages
from biaslab.fairness.thresholds import (
    METHODS,
    DemographicParityThresholds,
    EqualizedOddsThresholds,
    EqualOpportunityThresholds,
    FixedThreshold,
    NotApplicable,
    YoudenThreshold,
    decide,
    decide_methods,
    fit_postprocessor,
    make_postprocessor,
    not_applicable,
    row_groups,
)
from tests.conftest import ROOT


def _youden_j(scores, labels, threshold):
    pred = scores >= threshold
    return pred[labels == 1].mean() - pred[labels == 0].mean()


def _brute_force_best_j(scores, labels):
    """Max J over every distinct cut: each distinct score and 'nobody positive'."""
    candidates = np.r_[np.unique(scores), np.inf]
    return max(_youden_j(scores, labels, t) for t in candidates)


def test_fixed_threshold_uses_greater_or_equal():
    post = FixedThreshold(threshold=0.5).fit([0.1, 0.9], [0, 1])
    assert post.threshold_ == 0.5
    out = post.predict([0.4999, 0.5, 0.5001, 0.0, 1.0])
    np.testing.assert_array_equal(out, [0, 1, 1, 0, 1])
    assert out.dtype == np.int8
    assert post.params_() == {"threshold": 0.5}


def test_fixed_fit_returns_self_and_init_only_stores():
    post = FixedThreshold(threshold=0.3)
    assert post.threshold == 0.3 and not hasattr(post, "threshold_")
    assert post.fit([0.2, 0.4], [0, 1]) is post


def test_fixed_threshold_fit_accepts_one_class():
    """A fixed threshold learns nothing, so one-class validation data is fine."""
    post = FixedThreshold(threshold=0.5).fit([0.2, 0.7], [1, 1])
    np.testing.assert_array_equal(post.predict([0.2, 0.7]), [0, 1])


@pytest.mark.parametrize("seed", range(5))
def test_youden_on_separable_data_is_perfect(seed):
    rng = np.random.default_rng(seed)
    neg, pos = rng.uniform(0.0, 0.4, 50), rng.uniform(0.6, 1.0, 30)
    scores, labels = np.r_[neg, pos], np.r_[np.zeros(50, int), np.ones(30, int)]
    perm = rng.permutation(80)
    post = YoudenThreshold().fit(scores[perm], labels[perm])
    assert neg.max() < post.threshold_ < pos.min()
    assert post.threshold_ == pytest.approx((neg.max() + pos.min()) / 2)  # half-way
    np.testing.assert_array_equal(post.predict(scores), labels)


@pytest.mark.parametrize("seed", range(30))
def test_youden_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]  # both classes
    shift = rng.uniform(-0.5, 1.5)
    scores = rng.normal(shift * labels, 1.0)
    if seed % 3 == 0:  # coarse scores: many ties
        scores = np.round(scores, 0)
    post = YoudenThreshold().fit(scores, labels)
    best = _brute_force_best_j(scores, labels)
    assert _youden_j(scores, labels, post.threshold_) == pytest.approx(best, abs=1e-12)
    # the decisions on the fit data are those of the best cut: J read from predict agrees
    pred = post.predict(scores).astype(bool)
    assert pred[labels == 1].mean() - pred[labels == 0].mean() == pytest.approx(best, abs=1e-12)


def test_youden_ties_are_kept_together():
    # 0.5 is scored for two negatives and two positives: they fall on the same side
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 1, 0, 0])
    post = YoudenThreshold().fit(scores, labels)
    out = post.predict(scores)
    assert len(set(out[1:5])) == 1
    assert _youden_j(scores, labels, post.threshold_) == pytest.approx(
        _brute_force_best_j(scores, labels))


def test_youden_all_scores_tied():
    post = YoudenThreshold().fit([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])
    out = post.predict([0.5, 0.5])
    assert out[0] == out[1]  # J = 0 either way; a tie cannot be split


def test_youden_no_cut_better_than_chance_predicts_nobody_positive():
    # positives score lower: every cut has J <= 0, and "nobody positive" (J = 0) comes first
    scores, labels = np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])
    post = YoudenThreshold().fit(scores, labels)
    assert post.threshold_ > scores.max()
    np.testing.assert_array_equal(post.predict(scores), 0)


@pytest.mark.parametrize("upper", [0.1, 0.3, 0.5, 0.6, 0.7, 0.30000000000000004])
def test_youden_cut_between_adjacent_floats(upper):
    """Half-way between two adjacent floats rounds onto one of them; the cut must still hold."""
    lower = np.nextafter(upper, 0.0)
    post = YoudenThreshold().fit([upper, lower], [1, 0])
    assert lower < post.threshold_ <= upper
    np.testing.assert_array_equal(post.predict([upper, lower]), [1, 0])


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_youden_one_class_raises(labels):
    with pytest.raises(ValueError, match=r"YoudenThreshold: the fit data need both classes"):
        YoudenThreshold().fit([0.1, 0.5, 0.9], labels)


@pytest.mark.parametrize("cls", [FixedThreshold, YoudenThreshold])
def test_predict_before_fit_raises(cls):
    with pytest.raises(RuntimeError, match=rf"{cls.__name__} is not fitted; call fit\(\) first"):
        cls().predict([0.5])


@pytest.mark.parametrize("cls", [FixedThreshold, YoudenThreshold])
def test_nan_scores_raise_in_fit_and_predict(cls):
    with pytest.raises(ValueError, match=r"scores: expected a 1-D array without NaN"):
        cls().fit([0.1, np.nan, 0.9], [0, 1, 1])
    post = cls().fit([0.1, 0.9], [0, 1])
    with pytest.raises(ValueError, match=r"scores: expected a 1-D array without NaN"):
        post.predict([0.2, np.nan])


@pytest.mark.parametrize("cls", [FixedThreshold, YoudenThreshold])
def test_bad_shapes_and_labels_raise(cls):
    with pytest.raises(ValueError, match=r"got shape \(2, 2\)"):
        cls().fit([[0.1, 0.2], [0.3, 0.4]], [0, 1])
    with pytest.raises(ValueError, match=r"labels: shape \(2,\) does not match scores \(3,\)"):
        cls().fit([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match=r"labels: expected 0/1, got values \[0, 2\]"):
        cls().fit([0.1, 0.2, 0.3], [0, 2, 0])


def test_youden_params_reproduce_decisions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(labels, 1.0)
    post = YoudenThreshold().fit(scores, labels)
    test = rng.normal(0.5, 1.0, 100)
    fixed = FixedThreshold(threshold=post.params_()["threshold"]).fit(scores, labels)
    np.testing.assert_array_equal(post.predict(test), fixed.predict(test))


def test_make_postprocessor():
    fixed = make_postprocessor("fixed", fixed_threshold=0.7)
    assert isinstance(fixed, FixedThreshold) and fixed.threshold == 0.7
    assert isinstance(make_postprocessor("youden"), YoudenThreshold)
    with pytest.raises(ValueError, match=r"unknown method .hardt.; allowed: fixed, youden, "):
        make_postprocessor("hardt")


# --- per-group methods ---------------------------------------------------------------------

GROUP_METHODS = [DemographicParityThresholds, EqualOpportunityThresholds, EqualizedOddsThresholds]


def _grouped(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    y = (rng.random(n) < np.where(g == "a", 0.3, 0.6)).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + (1.5 + (g == "b")) * y - (g == "c") * 0.5)))
    return scores, y, g


@pytest.mark.parametrize("cls", GROUP_METHODS)
def test_empty_or_one_class_fit_data_is_not_applicable_with_the_reason(cls):
    # no validation rows at all (an audit table without val rows), or one class overall
    with pytest.raises(NotApplicable, match="no row"):
        cls().fit(np.array([]), np.array([], dtype=int), np.array([], dtype=object))
    with pytest.raises(NotApplicable, match="4 rows, all label 0"):
        cls().fit(np.full(4, 0.3), np.zeros(4, dtype=int), np.array(["a", "a", "b", "b"]))


def _rate(d, m):
    return d[m].mean()


def test_demographic_parity_equalises_selection_rates():
    scores, y, g = _grouped()
    post = DemographicParityThresholds().fit(scores, y, g)
    d = post.predict(scores, g)
    sel = [_rate(d, g == k) for k in "abc"]
    assert max(sel) - min(sel) <= 2 / min((g == k).sum() for k in "abc")
    assert set(post.thresholds_) == {"a", "b", "c"}
    np.testing.assert_allclose(sorted(post.rates_.values()), sorted(sel))


def test_equal_opportunity_equalises_tpr():
    scores, y, g = _grouped()
    d = EqualOpportunityThresholds().fit(scores, y, g).predict(scores, g)
    tpr = [_rate(d, (g == k) & (y == 1)) for k in "abc"]
    assert max(tpr) - min(tpr) <= 2 / min(((g == k) & (y == 1)).sum() for k in "abc")


def test_equalized_odds_expected_rates_are_equal():
    scores, y, g = _grouped()
    post = EqualizedOddsThresholds(seed=3).fit(scores, y, g)
    # expected decision of each row under the randomised rule, from the saved params
    params = post.params_()["groups"]
    p = {k: np.array([params[x][k] for x in g]) for k in next(iter(params.values()))}
    hi = scores >= p["t_high"]
    mid = (scores >= p["t_low"]) & ~hi
    e = (1 - p["p_ignore"]) * (hi + p["p_low"] * mid) + p["p_ignore"] * p["p_constant"]
    for label in (0, 1):
        rates = [e[(g == k) & (y == label)].mean() for k in "abc"]
        assert max(rates) - min(rates) < 1e-9
    d = post.predict(scores, g)
    np.testing.assert_array_equal(d, post.predict(scores, g))  # seeded: reproducible
    assert not np.array_equal(d, EqualizedOddsThresholds(seed=4).fit(scores, y, g)
                              .predict(scores, g))


@pytest.mark.parametrize("tol", [0.05, 0.2])
@pytest.mark.parametrize("cls", GROUP_METHODS)
def test_tolerance_bounds_the_gap_and_never_lowers_balanced_accuracy(cls, tol):
    scores, y, g = _grouped(seed=1)
    exact, loose = cls().fit(scores, y, g), cls(tolerance=tol).fit(scores, y, g)
    if cls is EqualizedOddsThresholds:
        tprs = [v["tpr"] for v in loose.params_()["groups"].values()]
        assert max(tprs) - min(tprs) <= tol + 1e-9
        gain = [np.mean(tprs), np.mean([v["tpr"] for v in exact.params_()["groups"].values()])]
        assert gain[0] >= gain[1] - 1e-9
        return
    rates = list(loose.rates_.values())
    assert max(rates) - min(rates) <= tol + 1e-9

    def bacc(post):
        d = post.predict(scores, g)
        return (d[y == 1].mean() + 1 - d[y == 0].mean()) / 2

    assert bacc(loose) >= bacc(exact) - 1e-9


@pytest.mark.parametrize("cls", GROUP_METHODS)
def test_group_methods_need_groups_and_known_groups(cls):
    scores, y, g = _grouped(300)
    with pytest.raises(ValueError, match=r"groups: per-group thresholds need the group"):
        cls().fit(scores, y, None)
    post = cls().fit(scores, y, g)
    with pytest.raises(ValueError, match=r"groups: \['z'\] were not seen in fit"):
        post.predict(scores[:2], np.array(["a", "z"], dtype=object))
    with pytest.raises(RuntimeError, match=rf"{cls.__name__} is not fitted"):
        cls().predict(scores, g)
    assert cls().fit(scores, y, g) is not None and "groups" in post.params_()


@pytest.mark.parametrize("cls", [EqualOpportunityThresholds, EqualizedOddsThresholds])
def test_group_without_positives_raises_naming_it(cls):
    scores, y, g = _grouped(300)
    y = np.where(g == "b", 0, y)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: group b "):
        cls().fit(scores, y, g)


@pytest.mark.parametrize("cls", GROUP_METHODS)
def test_group_params_reproduce_decisions(cls):
    """Decisions follow from the saved params alone (thresholds, probabilities, seed)."""
    scores, y, g = _grouped(500)
    post = cls().fit(scores, y, g)
    params = post.params_()["groups"]
    test = np.random.default_rng(9).random(200)
    tg = np.random.default_rng(8).choice(np.array(["a", "b", "c"], dtype=object), 200)
    if cls is EqualizedOddsThresholds:
        u_mix, u_ign, u_const = np.random.default_rng(post.seed).random((3, 200))
        p = {k: np.array([params[x][k] for x in tg]) for k in next(iter(params.values()))}
        thr = (test >= p["t_high"]) | ((test >= p["t_low"]) & (u_mix < p["p_low"]))
        expected = np.where(u_ign < p["p_ignore"], u_const < p["p_constant"], thr)
    else:
        expected = test >= np.array([params[x]["threshold"] for x in tg])
    np.testing.assert_array_equal(post.predict(test, tg), expected.astype(np.int8))


def test_make_postprocessor_group_methods():
    post = make_postprocessor("equalized_odds", tolerance=0.1, seed=7)
    assert isinstance(post, EqualizedOddsThresholds) and post.seed == 7 and post.tolerance == 0.1
    assert isinstance(make_postprocessor("demographic_parity"), DemographicParityThresholds)
    assert isinstance(make_postprocessor("equal_opportunity"), EqualOpportunityThresholds)


# --- registry ------------------------------------------------------------------------------

def test_registry_names_and_order():
    assert list(METHODS) == ["fixed", "youden", "demographic_parity", "equal_opportunity",
                             "equalized_odds", "temperature", "isotonic"]


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_builds_and_needs_groups_says_whether_fit_needs_them(method):
    post = make_postprocessor(method, fixed_threshold=0.4, tolerance=0.05, seed=2)
    assert type(post) is METHODS[method] and isinstance(post.needs_groups, bool)
    scores, y, g = _grouped(300)
    if post.needs_groups:
        with pytest.raises(ValueError, match=r"groups: per-group thresholds need the group"):
            post.fit(scores, y)
        post.fit(scores, y, g)
    else:
        assert post.fit(scores, y) is post
    # uniform over methods: one threshold per row, and predict agrees with it where the
    # rule is not randomised
    thr = post.threshold_of(scores, g)
    assert thr.shape == scores.shape and thr.dtype == float
    if method != "equalized_odds":
        np.testing.assert_array_equal(post.predict(scores, g), scores >= thr)


def test_make_postprocessor_passes_each_method_only_its_options():
    assert make_postprocessor("fixed", fixed_threshold=0.2, tolerance=0.3).threshold == 0.2
    dp = make_postprocessor("demographic_parity", fixed_threshold=0.2, tolerance=0.3, seed=5)
    assert dp.tolerance == 0.3 and not hasattr(dp, "seed") and not hasattr(dp, "threshold")


@pytest.mark.parametrize("method", ["hardt", "Fixed", "", None, 3])
def test_unknown_method_names_key_value_and_allowed(method):
    allowed = ("fixed, youden, demographic_parity, equal_opportunity, equalized_odds, "
               "temperature, isotonic")
    pattern = rf"^postprocess\.methods: unknown method {re.escape(repr(method))}; allowed: "
    with pytest.raises(ValueError, match=pattern + allowed + "$"):
        make_postprocessor(method)


@pytest.mark.parametrize("cls", [FixedThreshold, YoudenThreshold, *GROUP_METHODS])
def test_threshold_of_before_fit_raises(cls):
    with pytest.raises(RuntimeError, match=rf"{cls.__name__} is not fitted"):
        cls().threshold_of([0.5], np.array(["a"], dtype=object))


def test_threshold_of_is_each_rows_group_threshold():
    scores, y, g = _grouped(500)
    dp = DemographicParityThresholds().fit(scores, y, g)
    np.testing.assert_array_equal(dp.threshold_of(scores, g), [dp.thresholds_[k] for k in g])
    eo = EqualizedOddsThresholds().fit(scores, y, g)
    np.testing.assert_array_equal(eo.threshold_of(scores, g),
                                  [eo.params_by_group_[k]["t_high"] for k in g])
    youden = YoudenThreshold().fit(scores, y)
    np.testing.assert_array_equal(youden.threshold_of(scores), youden.threshold_)
    with pytest.raises(ValueError, match=r"groups: \['z'\] were not seen in fit"):
        dp.threshold_of(scores[:1], np.array(["z"], dtype=object))


def test_package_does_not_import_config():
    """biaslab.config imports METHODS from here: importing config back would be a circle."""
    code = ("import sys, biaslab.fairness.thresholds; "
            "sys.exit('biaslab.config' in sys.modules or 'torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# --- decide: decisions of a table, counterfactuals included --------------------------------

def _table(n=400, seed=0, counterfactual=True):
    """Predictions where S shifts the score, so per-S thresholds differ."""
    rng = np.random.default_rng(seed)
    s, y = rng.integers(0, 2, n), rng.integers(0, 2, n)
    sex = rng.choice(np.array(["F", "M"], dtype=object), n)
    base = rng.normal(0, 1, n) + 1.5 * y
    table = pd.DataFrame({"row": np.arange(n) * 10, "label": y, "s": s, "sex": sex,
                          "score": 1 / (1 + np.exp(-(base + 1.0 * s)))})
    if counterfactual:
        table["score_s0"] = 1 / (1 + np.exp(-base))
        table["score_s1"] = 1 / (1 + np.exp(-(base + 1.0)))
    return table


def test_decide_counterfactuals_use_the_forced_groups_threshold():
    table = _table()
    post = fit_postprocessor("demographic_parity", table, ["s"])
    t0, t1 = post.thresholds_["s=0"], post.thresholds_["s=1"]
    assert t0 != t1
    out = decide(post, table, ["s"], split="test", method="demographic_parity")
    assert list(out.columns) == ["row", "split", "method", "threshold", "score", "decision",
                                 "decision_s0", "decision_s1"]
    np.testing.assert_array_equal(out["row"], table["row"])
    assert set(out["split"]) == {"test"} and set(out["method"]) == {"demographic_parity"}
    factual = np.where(table["s"] == 1, t1, t0)
    np.testing.assert_array_equal(out["threshold"], factual)
    np.testing.assert_array_equal(out["decision"], table["score"] >= factual)
    # every row, whatever its S, is compared with the threshold of the forced group
    np.testing.assert_array_equal(out["decision_s0"], table["score_s0"] >= t0)
    np.testing.assert_array_equal(out["decision_s1"], table["score_s1"] >= t1)
    assert out["decision"].dtype == np.int8 and out["decision_s1"].dtype == np.int8


def test_decide_forces_s_inside_an_intersection():
    table = _table()
    post = fit_postprocessor("demographic_parity", table, ["s", "sex"])
    out = decide(post, table, ["s", "sex"], split="val", method="dp")
    forced = [post.thresholds_[f"s=1&sex={x}"] for x in table["sex"]]
    np.testing.assert_array_equal(out["decision_s1"], table["score_s1"] >= forced)


def test_decide_without_s_in_groups_keeps_the_factual_group():
    table = _table()
    post = fit_postprocessor("demographic_parity", table, ["sex"])
    out = decide(post, table, ["sex"], split="val", method="dp")
    for value in (0, 1):
        np.testing.assert_array_equal(out[f"decision_s{value}"],
                                      table[f"score_s{value}"] >= out["threshold"])


def test_decide_equalized_odds_threshold_is_t_high_and_counterfactuals_share_draws():
    table = _table()
    post = fit_postprocessor("equalized_odds", table, ["s"], seed=4)
    out = decide(post, table, ["s"], split="test", method="equalized_odds")
    t_high = {k: v["t_high"] for k, v in post.params_()["groups"].items()}
    np.testing.assert_array_equal(out["threshold"], [t_high[f"s={v}"] for v in table["s"]])
    forced = np.array(["s=1"] * len(table), dtype=object)
    np.testing.assert_array_equal(out["decision_s1"], post.predict(table["score_s1"], forced))


@pytest.mark.parametrize("method", list(METHODS))
def test_decide_without_counterfactual_scores_has_no_decision_s_columns(method):
    table = _table(counterfactual=False)
    post = fit_postprocessor(method, table, ["s"])
    out = decide(post, table, ["s"], split="val", method=method)
    assert list(out.columns) == ["row", "split", "method", "threshold", "score", "decision"]
    if hasattr(post, "calibrate"):  # a recalibration keeps its recalibrated probabilities
        keys = row_groups(post, table, ["s"])
        np.testing.assert_array_equal(out["score"], post.calibrate(table["score"], keys))
    else:
        np.testing.assert_array_equal(out["score"], table["score"])


def test_decide_single_threshold_needs_no_group_columns():
    table = _table().drop(columns=["s", "sex"])
    post = fit_postprocessor("fixed", table, ["s", "age"], fixed_threshold=0.6)
    out = decide(post, table, ["s", "age"], split="val", method="fixed")
    np.testing.assert_array_equal(out["threshold"], 0.6)
    np.testing.assert_array_equal(out["decision_s1"], table["score_s1"] >= 0.6)
    fit_postprocessor("youden", table, ["age"])  # youden takes no groups: no column needed
    with pytest.raises(ValueError, match=r"groups: column\(s\) \['age'\] not found"):
        fit_postprocessor("equal_opportunity", _table(), ["age"])


def test_decide_empty_split():
    table = _table()
    post = fit_postprocessor("equal_opportunity", table, ["s"])
    out = decide(post, table.iloc[:0], ["s"], split="test", method="equal_opportunity")
    assert len(out) == 0 and "decision_s1" in out and out["threshold"].dtype == float


def test_fit_postprocessor_names_missing_columns():
    with pytest.raises(ValueError, match=r"predictions: column\(s\) \['label'\] not found"):
        fit_postprocessor("youden", _table().drop(columns="label"), ["s"])


# --- not applicable: the data cannot support a method (issue 12, item 6) -------------------

def _one_class_group(label: int, n=300):
    """Group b of :func:`_grouped` with every label set to ``label``; a and c keep both."""
    scores, y, g = _grouped(n)
    return scores, np.where(g == "b", label, y), g


@pytest.mark.parametrize(("cls", "label", "says"), [
    (EqualOpportunityThresholds, 0, r"group b has no positive row in the fit data \(\d+ rows, "
                                    r"all label 0\): its TPR is undefined"),
    (EqualizedOddsThresholds, 0, r"group b has one class in the fit data \(\d+ rows, all "
                                 r"label 0\): its TPR is undefined"),
    (EqualizedOddsThresholds, 1, r"group b has one class in the fit data \(\d+ rows, all "
                                 r"label 1\): its FPR is undefined"),
])
def test_group_with_one_class_is_not_applicable(cls, label, says):
    scores, y, g = _one_class_group(label)
    with pytest.raises(NotApplicable, match=rf"^{cls.__name__}: {says}$") as caught:
        cls().fit(scores, y, g)
    assert re.fullmatch(says, caught.value.reason)  # the reason, without the method's name
    assert isinstance(caught.value, ValueError)  # a stage that does not skip stops cleanly


@pytest.mark.parametrize(("cls", "label"), [(DemographicParityThresholds, 0),
                                            (DemographicParityThresholds, 1),
                                            (EqualOpportunityThresholds, 1)])
def test_group_with_one_class_is_fine_where_the_rate_is_defined(cls, label):
    """Selection rates need no class; a group of positives only has a TPR."""
    scores, y, g = _one_class_group(label)
    post = cls().fit(scores, y, g)
    rates = list(post.rates_.values())
    assert set(post.thresholds_) == {"a", "b", "c"}
    assert max(rates) - min(rates) <= 2 / min((g == k).sum() for k in "abc")


@pytest.mark.parametrize("method", ["youden", "demographic_parity", "equal_opportunity",
                                    "equalized_odds"])
@pytest.mark.parametrize("label", [0, 1])
def test_fit_data_of_one_class_is_not_applicable_for_every_fitted_method(method, label):
    scores, _, g = _grouped(300)
    post = make_postprocessor(method)
    with pytest.raises(NotApplicable, match=rf"^{type(post).__name__}: .*all label {label}"):
        post.fit(scores, np.full(len(scores), label), g if post.needs_groups else None)
    fixed = make_postprocessor("fixed").fit(scores, np.full(len(scores), label))
    assert fixed.threshold_ == 0.5  # learns nothing: applies whatever the classes


@pytest.mark.parametrize("cls", GROUP_METHODS)
def test_group_unseen_in_fit_is_not_applicable(cls):
    scores, y, g = _grouped(300)
    post = cls().fit(scores, y, g)
    with pytest.raises(NotApplicable, match=r"^groups: \['z'\] were not seen in fit"):
        post.predict(scores[:2], np.array(["a", "z"], dtype=object))


@pytest.mark.parametrize("cls", GROUP_METHODS)
def test_bad_inputs_are_errors_not_not_applicable(cls):
    """Shapes, NaN, labels and missing groups are bugs or bad params: they must stop the run."""
    scores, y, g = _grouped(300)
    for args in [(scores, y, None), (np.r_[np.nan, scores[1:]], y, g), (scores, y * 2, g),
                 (scores, y[:-1], g), (scores, y, g[:-1])]:
        with pytest.raises(ValueError) as caught:
            cls().fit(*args)
        assert not isinstance(caught.value, NotApplicable), caught.value
    with pytest.raises(ValueError) as caught:
        make_postprocessor("hardt")
    assert not isinstance(caught.value, NotApplicable)


def _extreme(n=80, seed=0):
    """Predictions under p0 = 0, p1 = 1: S is the label, so each group of s has one class."""
    table = _table(n, seed)
    table["s"] = table["label"]
    return table


ALL = ["fixed", "youden", "demographic_parity", "equal_opportunity", "equalized_odds"]


def test_decide_methods_skips_the_methods_the_data_cannot_support():
    table = _extreme()
    val, test = table.iloc[:40], table.iloc[40:]
    decisions, params = decide_methods(ALL, val, test, ["s"], fixed_threshold=0.4, seed=3)
    assert not_applicable(params) == {
        "equal_opportunity": "group s=0 has no positive row in the fit data "
                             f"({(val['s'] == 0).sum()} rows, all label 0): its TPR is undefined",
        "equalized_odds": "group s=0 has one class in the fit data "
                          f"({(val['s'] == 0).sum()} rows, all label 0): its TPR is undefined"}
    assert list(params) == ALL  # every method has its entry, in order
    assert params["fixed"] == {"threshold": 0.4}
    assert list(decisions["method"].unique()) == ["fixed", "youden", "demographic_parity"]
    # the others' decisions are those of fitting them alone
    for method in ("youden", "demographic_parity"):
        post = fit_postprocessor(method, val, ["s"])
        assert params[method] == post.params_()
        alone = decide(post, test, ["s"], split="test", method=method)
        got = decisions[(decisions["method"] == method) & (decisions["split"] == "test")]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), alone)
    assert (decisions.groupby("method")["split"].value_counts() == 40).all()


def test_decide_methods_skips_a_method_whose_test_group_was_not_in_validation():
    table = _table(200)
    val, test = table[table["sex"] == "F"], table
    decisions, params = decide_methods(["fixed", "demographic_parity"], val, test, ["sex"])
    assert not_applicable(params) == {
        "demographic_parity": "groups: ['sex=M'] were not seen in fit; fitted groups: ['sex=F']"}
    assert set(decisions["method"]) == {"fixed"}


def test_decide_methods_fails_when_no_method_applies():
    table = _extreme()
    with pytest.raises(ValueError, match=(
            r"^postprocess\.methods: no method applies to the 40 validation rows "
            r"\(equal_opportunity: group s=0 has no positive row .*; equalized_odds: group s=0 "
            r"has one class .*\); add fixed")) as caught:
        decide_methods(["equal_opportunity", "equalized_odds"], table.iloc[:40], table.iloc[40:],
                       ["s"])
    assert not isinstance(caught.value, NotApplicable)  # the run stops: nothing to decide


def test_decide_methods_lets_config_errors_through():
    table = _extreme()
    with pytest.raises(ValueError, match=r"groups: column\(s\) \['age'\] not found"):
        decide_methods(["fixed", "equalized_odds"], table, table, ["age"])
    with pytest.raises(ValueError, match=r"unknown method 'hardt'"):
        decide_methods(["fixed", "hardt"], table, table, ["s"])


# --- the postprocess stage, in this process (as tests/test_hostile.py runs stages) ----------

@pytest.fixture
def stage_folder(tmp_path, monkeypatch):
    """An empty working directory; the signal handlers stages.run sets are put back after."""
    saved = {signum: signal.getsignal(signum) for signum in stages.STOP_SIGNALS}
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _postprocess(folder, monkeypatch, methods) -> int:
    """Write the stage's inputs (extreme bias: s is the label) and run it as dvc.yaml does."""
    import stages.postprocess

    table = _extreme(80)
    for rel, frame in {
        "data/predictions/none.parquet": table[["row", "score", "score_s0", "score_s1"]].assign(
            split=np.where(np.arange(80) < 40, "val", "test")),
        "data/prepared/index.parquet": table[["row", "label"]],
        "data/bias.parquet": table[["row", "s"]],
    }.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / rel, index=False)
    (folder / "params.yaml").write_text(yaml.safe_dump({"postprocess": {"methods": methods}}))
    monkeypatch.setattr(sys, "argv", [
        "stages.postprocess", "--predictions", "data/predictions/none.parquet",
        "--index", "data/prepared/index.parquet", "--bias", "data/bias.parquet",
        "--out", "data/decisions/none.parquet", "--thresholds", "metrics/thresholds/none.json"])
    try:
        stages.run(stages.postprocess.main, "postprocess")
    except SystemExit as exc:
        return exc.code
    return 0


def test_stage_skips_a_method_and_records_why(stage_folder, monkeypatch, capsys):
    code = _postprocess(stage_folder, monkeypatch, ["fixed", "youden", "equalized_odds"])
    out, err = capsys.readouterr()
    assert code == 0, err
    reason = ("group s=0 has one class in the fit data (20 rows, all label 0): its TPR is "
              "undefined")
    assert err.splitlines() == [f"postprocess@none: warning: equalized_odds not applicable: "
                                f"{reason}"]
    assert out.startswith("postprocess@none: 2 methods (fixed, youden) fit on 40 val rows")
    assert "1 not applicable" in out
    fitted = json.loads((stage_folder / "metrics/thresholds/none.json").read_text())
    assert list(fitted) == ["fixed", "youden", "equalized_odds"]
    assert fitted["equalized_odds"] == {"not_applicable": reason}
    decisions = pd.read_parquet(stage_folder / "data/decisions/none.parquet")
    assert decisions.groupby("method", sort=False).size().to_dict() == {"fixed": 80, "youden": 80}


def test_stage_fails_in_one_line_when_no_method_applies(stage_folder, monkeypatch, capsys):
    code = _postprocess(stage_folder, monkeypatch, ["equal_opportunity", "equalized_odds"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "postprocess: error: postprocess.methods: no method applies to the 40 validation rows "
        "(equal_opportunity: group s=0 has no positive row in the fit data (20 rows, all label "
        "0): its TPR is undefined; equalized_odds: group s=0 has one class in the fit data (20 "
        "rows, all label 0): its TPR is undefined); add fixed, which needs no class, or change "
        "the data or split"]
    assert not (stage_folder / "data/decisions").exists()
    assert not (stage_folder / "metrics").exists()
