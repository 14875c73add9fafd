"""biaslab.fairness.metrics: per-group rates, between-group gaps and stratified bootstrap
intervals."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_score,
    recall_score,
)

from biaslab.fairness.bootstrap import binned_resamples
from biaslab.fairness.metrics import GAPS, PER_GROUP, RATES, gaps, group_report, rates


def _counts(y, d, flip=None):
    flip = np.zeros_like(y) if flip is None else flip
    return np.bincount(4 * flip + 2 * y + d, minlength=8)


def _data(n=2000, seed=0, groups=("a", "b")):
    """Labels, decisions (noisy, group-dependent) and groups, every cell populated."""
    rng = np.random.default_rng(seed)
    g = rng.choice(np.array(groups), n)
    y = rng.integers(0, 2, n)
    bump = (g == groups[0]) * 0.15
    d = (rng.random(n) < np.where(y == 1, 0.7 + bump, 0.25 + bump)).astype(int)
    flip = (rng.random(n) < 0.1).astype(int)
    return y, d, g, flip


@pytest.mark.parametrize("seed", range(4))
def test_rates_match_sklearn_per_group(seed):
    y, d, g, flip = _data(n=500, seed=seed, groups=("a", "b", "c"))
    for group in ("a", "b", "c"):
        m = g == group
        r = rates(_counts(y[m], d[m], flip[m]))
        tn, fp, fn, tp = confusion_matrix(y[m], d[m], labels=[0, 1]).ravel()
        assert r["n"] == m.sum()
        assert r["accuracy"] == pytest.approx(accuracy_score(y[m], d[m]))
        assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y[m], d[m]))
        assert r["tpr"] == pytest.approx(recall_score(y[m], d[m]))
        assert r["fpr"] == pytest.approx(fp / (fp + tn))
        assert r["ppv"] == pytest.approx(precision_score(y[m], d[m]))
        assert r["selection_rate"] == pytest.approx(d[m].mean())
        assert r["prevalence"] == pytest.approx(y[m].mean())
        assert r["flip_rate"] == pytest.approx(flip[m].mean())


def test_rates_are_vectorised_over_leading_axes():
    y, d, g, flip = _data(n=300)
    per_group = np.stack([_counts(y[g == k], d[g == k], flip[g == k]) for k in ("a", "b")])
    stacked = np.stack([per_group, per_group[::-1]])  # (2, 2, 8)
    r = rates(stacked)
    for m in RATES:
        assert r[m].shape == (2, 2)
        np.testing.assert_allclose(r[m][0], r[m][1][::-1])
        assert r[m][0, 0] == pytest.approx(rates(per_group[0])[m])


def test_rates_undefined_ratios_are_nan():
    r = rates(_counts(np.array([0, 0]), np.array([0, 0])))  # no positives, no decisions
    assert np.isnan(r["tpr"]) and np.isnan(r["ppv"]) and np.isnan(r["balanced_accuracy"])
    assert r["fpr"] == 0 and r["accuracy"] == 1 and r["selection_rate"] == 0


def _rates_of(sel, tpr, fpr, bacc=None):
    sel, tpr, fpr = map(np.asarray, (sel, tpr, fpr))
    bacc = (tpr + 1 - fpr) / 2 if bacc is None else np.asarray(bacc)
    return {"selection_rate": sel, "tpr": tpr, "fpr": fpr, "balanced_accuracy": bacc}


def test_gaps_two_groups_signed_by_hand():
    r = _rates_of(sel=[0.2, 0.5], tpr=[0.6, 0.9], fpr=[0.1, 0.4])
    out = gaps(r)
    assert set(out) == set(GAPS)
    assert out["disparate_impact"] == pytest.approx(0.2 / 0.5)
    assert out["statistical_parity_difference"] == pytest.approx(0.2 - 0.5)
    assert out["equal_opportunity_difference"] == pytest.approx(0.6 - 0.9)
    assert out["average_odds_difference"] == pytest.approx(((0.1 - 0.4) + (0.6 - 0.9)) / 2)
    assert out["equalized_odds_difference"] == pytest.approx(max(0.3, 0.3))
    assert out["worst_group_balanced_accuracy"] == pytest.approx(min(0.75, 0.75))


def test_gaps_two_groups_equalized_odds_takes_the_larger_gap():
    out = gaps(_rates_of(sel=[0.4, 0.4], tpr=[0.8, 0.7], fpr=[0.05, 0.35]))
    assert out["equalized_odds_difference"] == pytest.approx(0.3)
    assert out["worst_group_balanced_accuracy"] == pytest.approx((0.7 + 1 - 0.35) / 2)


def test_gaps_three_groups_take_the_group_farthest_from_the_reference():
    # reference: the last group (sel 0.5, TPR 0.5, FPR 0.3)
    r = _rates_of(sel=[0.3, 0.6, 0.5], tpr=[0.7, 0.9, 0.5], fpr=[0.2, 0.1, 0.3],
                  bacc=[0.75, 0.9, 0.6])
    out = gaps(r)
    assert out["disparate_impact"] == pytest.approx(0.3 / 0.5)  # |log 0.6| > |log 1.2|
    assert out["statistical_parity_difference"] == pytest.approx(0.3 - 0.5)
    assert out["equal_opportunity_difference"] == pytest.approx(0.9 - 0.5)
    assert out["average_odds_difference"] == pytest.approx(((0.1 - 0.3) + (0.9 - 0.5)) / 2)
    assert out["equalized_odds_difference"] == pytest.approx(0.4)  # over all groups
    assert out["worst_group_balanced_accuracy"] == pytest.approx(0.6)
    # the order of the other groups does not matter; the reference does
    swapped = gaps({k: v[[1, 0, 2]] for k, v in r.items()})
    for m in GAPS:
        assert swapped[m] == pytest.approx(out[m], nan_ok=True)
    ref_first = gaps({k: v[[2, 1, 0]] for k, v in r.items()})  # reference: sel 0.3
    assert ref_first["disparate_impact"] == pytest.approx(0.6 / 0.3)


def test_gaps_each_gap_picks_its_own_worst_group_and_ratios_on_a_log_scale():
    out = gaps(_rates_of(sel=[0.2, 0.95, 0.5], tpr=[0.5, 0.5, 0.5], fpr=[0.1, 0.1, 0.1]))
    # DI: 0.4 is farther from parity than 1.9 (|log 0.4| = 0.92 > |log 1.9| = 0.64) ...
    assert out["disparate_impact"] == pytest.approx(0.2 / 0.5)
    # ... while the difference is larger for the other group (+0.45 against -0.3)
    assert out["statistical_parity_difference"] == pytest.approx(0.95 - 0.5)
    assert out["equal_opportunity_difference"] == 0


def test_gaps_with_an_undefined_group_are_nan():
    out = gaps(_rates_of(sel=[0.2, 0.4, 0.5], tpr=[np.nan, 0.9, 0.5], fpr=[0.1, 0.2, 0.3]))
    assert np.isnan(out["equal_opportunity_difference"])
    assert np.isnan(out["average_odds_difference"])
    assert out["statistical_parity_difference"] == pytest.approx(0.2 - 0.5)


def test_gaps_are_vectorised_over_resamples():
    r = _rates_of(sel=[[0.2, 0.5], [0.3, 0.3]], tpr=[[0.6, 0.9], [0.5, 0.5]],
                  fpr=[[0.1, 0.4], [0.2, 0.2]])
    out = gaps(r)
    np.testing.assert_allclose(out["disparate_impact"], [0.4, 1.0])
    np.testing.assert_allclose(out["statistical_parity_difference"], [-0.3, 0.0], atol=1e-12)


def test_gaps_disparate_impact_with_zero_selection_is_inf_or_nan_not_an_error():
    out = gaps(_rates_of(sel=[0.2, 0.0], tpr=[0.5, 0.0], fpr=[0.1, 0.0]))
    assert np.isinf(out["disparate_impact"])
    out = gaps(_rates_of(sel=[0.0, 0.0], tpr=[0.5, 0.0], fpr=[0.1, 0.0]))
    assert np.isnan(out["disparate_impact"])


def _resampled_counts(counts, n_boot, seed):
    """Cell counts of the stratified bootstrap, rows rebuilt from a (groups, 8) count table."""
    codes = np.repeat(np.arange(counts.shape[0]), counts.sum(1))
    cells = np.concatenate([np.repeat(np.arange(8), row) for row in counts])
    zeros = np.zeros(len(codes))
    res = binned_resamples(codes, cells, zeros.astype(int), zeros, counts.shape[0], 1, n_boot,
                           seed)
    return res["counts"]


def test_bootstrap_keeps_group_totals():
    counts = np.array([[10, 3, 0, 7, 1, 0, 2, 0], [50, 5, 5, 40, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0,
                                                                              0, 0]])
    boot = _resampled_counts(counts, n_boot=300, seed=0)
    assert boot.shape == (300, 3, 8) and (boot == np.rint(boot)).all()  # whole counts
    np.testing.assert_array_equal(boot.sum(-1), np.broadcast_to(counts.sum(-1), (300, 3)))
    # an empty cell stays empty, and the resampled cells average to the observed ones
    assert (boot[:, counts == 0] == 0).all()
    np.testing.assert_allclose(boot.mean(0), counts, atol=1.0)
    np.testing.assert_array_equal(boot, _resampled_counts(counts, 300, seed=0))
    assert not np.array_equal(boot, _resampled_counts(counts, 300, seed=1))


def test_bootstrap_zero_resamples():
    assert _resampled_counts(np.ones((2, 8), int), 0, seed=0).shape == (0, 2, 8)


def test_group_report_matches_sklearn_and_overall():
    y, d, g, flip = _data()
    per_group, between = group_report(y, d, g, flip=flip, n_boot=200, seed=0, name="sex")
    assert per_group["group"].tolist() == ["sex=a", "sex=b", "all"]
    for label, m in (("sex=a", g == "a"), ("sex=b", g == "b"), ("all", np.ones(len(y), bool))):
        row = per_group.set_index("group").loc[label]
        assert row["n"] == m.sum()
        assert row["accuracy"] == pytest.approx(accuracy_score(y[m], d[m]))
        assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y[m], d[m]))
        assert row["tpr"] == pytest.approx(recall_score(y[m], d[m]))
        assert row["ppv"] == pytest.approx(precision_score(y[m], d[m]))
        assert row["selection_rate"] == pytest.approx(d[m].mean())
        assert row["flip_rate"] == pytest.approx(flip[m].mean())
    sel = [d[g == k].mean() for k in ("a", "b")]
    value = between.set_index("metric")["value"]
    assert value["disparate_impact"] == pytest.approx(sel[0] / sel[1])
    assert value["statistical_parity_difference"] == pytest.approx(sel[0] - sel[1])
    tpr = [recall_score(y[g == k], d[g == k]) for k in ("a", "b")]
    assert value["equal_opportunity_difference"] == pytest.approx(tpr[0] - tpr[1])
    sizes = f"sex=a:{(g == 'a').sum()};sex=b:{(g == 'b').sum()}"
    assert (between["groups"] == sizes).all()


def _expected_columns():
    return (["group", "n", "patients", "positives", "negatives"]
            + [c for m in PER_GROUP for c in (m, f"{m}_lo", f"{m}_hi")]
            + ["insufficient", "undefined"])


@pytest.mark.parametrize("n_boot", [0, 50])
@pytest.mark.parametrize("groups", [("a", "b"), ("x", "y", "z")])
def test_group_report_has_the_same_shape_every_time(n_boot, groups):
    y, d, g, _ = _data(n=600, groups=groups)
    per_group, between = group_report(y, d, g, n_boot=n_boot)
    assert per_group.columns.tolist() == _expected_columns()
    assert len(per_group) == len(groups) + 1
    assert between.columns.tolist() == ["metric", "value", "lo", "hi", "groups", "insufficient",
                                        "undefined"]
    assert between["metric"].tolist() == list(GAPS)
    if n_boot == 0:
        assert per_group.filter(regex="_(lo|hi)$").isna().all().all()
        assert between[["lo", "hi"]].isna().all().all()
    else:
        assert per_group[["accuracy_lo", "accuracy_hi"]].notna().all().all()


def test_group_report_without_flip_has_zero_flip_rate():
    y, d, g, _ = _data(n=300)
    per_group, _ = group_report(y, d, g, n_boot=10)
    assert (per_group["flip_rate"] == 0).all()


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "tpr", "fpr", "ppv",
                                    "selection_rate", "prevalence"])
def test_intervals_contain_the_estimate_and_shrink_with_data(metric):
    widths = []
    for n in (400, 4000):
        y, d, g, flip = _data(n=n, seed=1)
        per_group, between = group_report(y, d, g, flip=flip, n_boot=400, seed=0)
        assert (per_group[f"{metric}_lo"] <= per_group[metric]).all()
        assert (per_group[metric] <= per_group[f"{metric}_hi"]).all()
        widths.append((per_group[f"{metric}_hi"] - per_group[f"{metric}_lo"]).to_numpy())
    # ten times the data: about sqrt(10) ~ 3.2 times narrower; ask for a clear 2x
    assert (widths[1] * 2 < widths[0]).all()


def test_gap_intervals_contain_the_estimate():
    y, d, g, flip = _data(n=4000, seed=2)
    _, between = group_report(y, d, g, flip=flip, n_boot=400, seed=0)
    between = between[between["metric"] != "auc_gap"]  # NaN: no scores given
    assert (between["lo"] <= between["value"]).all() and (between["value"] <= between["hi"]).all()


def test_higher_level_gives_wider_intervals():
    y, d, g, _ = _data(n=1000)
    narrow, _ = group_report(y, d, g, n_boot=300, level=0.8, seed=0)
    wide, _ = group_report(y, d, g, n_boot=300, level=0.99, seed=0)
    assert (wide["accuracy_hi"] - wide["accuracy_lo"] > narrow["accuracy_hi"]
            - narrow["accuracy_lo"]).all()


def test_group_report_is_invariant_to_row_order():
    y, d, g, flip = _data(n=800)
    perm = np.random.default_rng(5).permutation(len(y))
    a = group_report(y, d, g, flip=flip, n_boot=100, seed=3)
    b = group_report(y[perm], d[perm], g[perm], flip=flip[perm], n_boot=100, seed=3)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])


def test_group_report_is_deterministic_for_a_seed():
    y, d, g, _ = _data(n=500)
    a, _ = group_report(y, d, g, n_boot=100, seed=1)
    pd.testing.assert_frame_equal(a, group_report(y, d, g, n_boot=100, seed=1)[0])
    b, _ = group_report(y, d, g, n_boot=100, seed=2)
    assert not a["accuracy_lo"].equals(b["accuracy_lo"])


def test_group_report_accepts_pandas_inputs():
    y, d, g, flip = _data(n=300)
    a = group_report(y, d, g, flip=flip, n_boot=20)
    b = group_report(pd.Series(y, index=np.arange(300) + 50), pd.Series(d), pd.Series(g),
                     flip=pd.Series(flip.astype(bool)), n_boot=20)
    pd.testing.assert_frame_equal(a[0], b[0])


@pytest.mark.parametrize("groups", [np.zeros(50, int), np.full(50, "F")])
def test_single_group_raises(groups):
    y, d, _, _ = _data(n=50)
    with pytest.raises(ValueError, match=r"attribute 'sex' has a single group.*at least two"):
        group_report(y, d, groups, n_boot=10, name="sex")


def test_group_without_positives_gives_nan_and_a_warning():
    y, d, g, _ = _data(n=400)
    y = np.where(g == "b", 0, y)  # group b has no positive labels
    pattern = r"(tpr|balanced_accuracy) is undefined for group s=b"
    with pytest.warns(UserWarning, match=pattern) as record:
        per_group, between = group_report(y, d, g, n_boot=50, name="s")
    messages = {str(w.message).split(" (")[0] for w in record}
    assert messages == {"tpr is undefined for group s=b",
                        "balanced_accuracy is undefined for group s=b"}
    row = per_group.set_index("group")
    assert np.isnan(row.loc["s=b", "tpr"]) and np.isnan(row.loc["s=b", "balanced_accuracy"])
    assert np.isnan(row.loc["s=b", "tpr_lo"]) and np.isnan(row.loc["s=b", "tpr_hi"])
    assert not np.isnan(row.loc["s=a", "tpr"]) and not np.isnan(row.loc["all", "tpr"])
    value = between.set_index("metric")["value"]
    assert np.isnan(value["equal_opportunity_difference"])
    assert not np.isnan(value["disparate_impact"])


def test_fully_defined_groups_do_not_warn():
    y, d, g, _ = _data(n=400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group_report(y, d, g, n_boot=50)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": [0, 1, 2]}, r"labels: expected 3 values in \{0, 1\}"),
        ({"decisions": [0, 1]}, r"decisions: expected 3 values in \{0, 1\}, got shape \(2,\)"),
        ({"decisions": [0.5, 1, 0]}, r"decisions: expected 3 values in \{0, 1\}"),
        ({"groups": ["a", "b"]}, r"flip and groups: expected 3 values each"),
        ({"flip": [0, 1]}, r"flip and groups: expected 3 values each"),
        ({"groups": ["a", None, "b"]}, r"groups: missing values; every row needs a group"),
    ],
)
def test_group_report_input_errors(kwargs, message):
    args = {"labels": [0, 1, 1], "decisions": [0, 1, 0], "groups": ["a", "b", "b"]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        group_report(n_boot=0, **args)


# ---------------------------------------------------------------- patients, too few rows
def _few_positives(n_pos=4, n=200, seed=0):
    """Groups a and b; group a has ``n_pos`` positives, all detected (TPR 1 [1, 1] before)."""
    y, d, g, flip = _data(n=n, seed=seed)
    a = np.flatnonzero(g == "a")
    y[a] = 0
    y[a[:n_pos]] = 1
    d[a[:n_pos]] = 1
    return y, d, g, flip


def test_a_metric_with_too_few_positives_is_missing_with_the_reason():
    y, d, g, _ = _few_positives(4)
    per_group, between = group_report(y, d, g, n_boot=200, name="s", min_cell=5)
    row = per_group.set_index("group").loc["s=a"]
    for m in ("tpr", "balanced_accuracy"):  # no scores: AUC is absent, not insufficient
        assert np.isnan(row[m]) and np.isnan(row[f"{m}_lo"]) and np.isnan(row[f"{m}_hi"])
    assert row["insufficient"] == "balanced_accuracy, tpr: 4 positives (< evaluate.min_cell = 5)"
    assert not np.isnan(row["fpr"]) and not np.isnan(row["accuracy_lo"])
    assert per_group.set_index("group").loc["s=b", "insufficient"] == ""
    gap = between.set_index("metric")
    for m in ("equal_opportunity_difference", "average_odds_difference",
              "equalized_odds_difference", "worst_group_balanced_accuracy"):
        assert gap.loc[m, ["value", "lo", "hi"]].isna().all()
        assert gap.loc[m, "insufficient"] == "s=a has 4 positives (< evaluate.min_cell = 5)"
    for m in ("disparate_impact", "statistical_parity_difference"):
        assert gap.loc[m, "insufficient"] == "" and gap.loc[m, ["lo", "hi"]].notna().all()
    assert gap.loc["auc_gap", "insufficient"] == ""  # no scores: nothing to say
    # at min_cell = 4 the same figures are back, with their (zero-width) interval
    per_group, between = group_report(y, d, g, n_boot=200, name="s", min_cell=4)
    row = per_group.set_index("group").loc["s=a"]
    assert (row["tpr"], row["tpr_lo"], row["tpr_hi"]) == (1.0, 1.0, 1.0)
    assert (per_group["insufficient"] == "").all() and (between["insufficient"] == "").all()


def test_too_few_negatives_and_positive_decisions_name_their_cells():
    y, d, g, _ = _data(n=300, seed=3)
    rng = np.random.default_rng(0)
    a, b = np.flatnonzero(g == "a"), np.flatnonzero(g == "b")
    y[a] = 1
    y[a[:3]] = 0  # 3 negatives in a
    d[b] = 0
    d[b[:2]] = 1  # 2 positive decisions in b
    scores = np.clip(0.5 * y + 0.5 * rng.random(len(y)), 0, 1)
    per_group, between = group_report(y, d, g, scores=scores, n_boot=50, name="s")
    reason = per_group.set_index("group")["insufficient"]
    assert reason["s=a"] == ("balanced_accuracy, fpr, auc: 3 negatives (< evaluate.min_cell "
                             "= 5)")
    assert reason["s=b"] == "ppv: 2 positive decisions (< evaluate.min_cell = 5)"
    assert reason["all"] == ""
    gap = between.set_index("metric")["insufficient"]
    assert gap["average_odds_difference"] == "s=a has 3 negatives (< evaluate.min_cell = 5)"
    assert gap["auc_gap"] == "s=a has 3 negatives (< evaluate.min_cell = 5)"
    assert gap["equal_opportunity_difference"] == ""  # TPR needs positives only


def test_a_small_group_misses_every_metric():
    y, d, g, _ = _data(n=300)
    g = np.where(np.arange(300) < 3, "c", g)
    y[:3] = 0  # no positive at all: undefined too, and said so
    with pytest.warns(UserWarning, match="undefined for group s=c"):
        per_group, between = group_report(y, d, g, n_boot=20, name="s")
    row = per_group.set_index("group").loc["s=c"]
    assert row[list(RATES)].isna().all()
    assert row["insufficient"].startswith("prevalence, accuracy, selection_rate, flip_rate: "
                                          "3 images; ")
    assert between["value"].iloc[:6].isna().all()


def test_per_group_counts_of_images_patients_positives_negatives():
    y, d, g, _ = _data(n=400, seed=4)
    patients = np.arange(400) // 4  # four images each ...
    g = np.where(patients % 2 == 0, "a", "b")
    g[::4] = np.where(g[::4] == "a", "b", "a")  # ... one of them in the other group
    per_group, _ = group_report(y, d, g, patients=patients, n_boot=0)
    table = per_group.set_index("group")
    for label, m in (("group=a", g == "a"), ("group=b", g == "b"), ("all", np.ones(400, bool))):
        assert table.loc[label, "n"] == m.sum()
        assert table.loc[label, "patients"] == len(np.unique(patients[m]))
        assert table.loc[label, "positives"] == y[m].sum()
        assert table.loc[label, "negatives"] == (1 - y[m]).sum()
    assert table.loc["group=a", "patients"] == 100 and table.loc["all", "patients"] == 100
    # without patient ids each image is a patient of its own
    per_group, _ = group_report(y, d, g, n_boot=0)
    assert (per_group["patients"] == per_group["n"]).all()


def test_the_share_of_resamples_where_a_metric_is_undefined_is_reported():
    # group a: 10 patients; the 6 positives all belong to one of them, so a resample lacks
    # them (and TPR is undefined) when that patient is not drawn: (9/10)^10 = 35% of the time
    y, d, g, _ = _data(n=200, seed=5)
    patients = np.arange(200) + 100
    a = np.flatnonzero(g == "a")[:60]
    g = np.where(np.isin(np.arange(200), a), "a", "b")
    patients[a] = np.arange(60) // 6
    y[a] = 0
    y[a[:6]] = 1
    per_group, between = group_report(y, d, g, patients=patients, n_boot=2000, seed=1,
                                      name="s")
    undefined = per_group.set_index("group")["undefined"]
    shares = {m: float(p[:-1]) / 100 for m, p in (i.split(" ") for i in
                                                  undefined["s=a"].split(", "))}
    assert set(shares) == {"tpr", "balanced_accuracy"}  # no scores: no AUC
    share = shares["tpr"]
    assert share == shares["balanced_accuracy"] == pytest.approx(0.9 ** 10, abs=0.03)
    assert undefined["s=b"] == "" and undefined["all"] == ""
    gap = between.set_index("metric")["undefined"]
    assert gap["equal_opportunity_difference"] == pytest.approx(share, abs=1e-9)
    assert gap["disparate_impact"] == 0
    # the image bootstrap, with 6 positives among 60 images, almost never loses them all
    _, between = group_report(y, d, g, patients=patients, resample="image", n_boot=2000)
    assert between.set_index("metric").loc["equal_opportunity_difference", "undefined"] < 0.01


def test_resample_image_with_patients_is_the_image_bootstrap():
    y, d, g, flip = _data(n=500)
    patients = np.arange(500) // 3
    plain = group_report(y, d, g, flip=flip, n_boot=100, seed=2)
    image = group_report(y, d, g, flip=flip, patients=patients, resample="image", n_boot=100,
                         seed=2)
    pd.testing.assert_frame_equal(plain[0].drop(columns="patients"),
                                  image[0].drop(columns="patients"))
    pd.testing.assert_frame_equal(plain[1], image[1])
    cluster = group_report(y, d, g, flip=flip, patients=patients, n_boot=100, seed=2)
    assert not cluster[0]["accuracy_lo"].equals(image[0]["accuracy_lo"])
    pd.testing.assert_series_equal(cluster[0]["accuracy"], image[0]["accuracy"])


def test_patient_intervals_are_wider_for_clustered_decisions():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(300), 5)
    g = np.where(patients < 150, "a", "b")
    y = rng.integers(0, 2, 1500)
    d = (rng.random(300) < 0.5).astype(int)[patients]  # a patient's decisions all alike
    per_group, _ = group_report(y, d, g, patients=patients, n_boot=400, seed=0)
    image, _ = group_report(y, d, g, patients=patients, resample="image", n_boot=400, seed=0)
    width = per_group["selection_rate_hi"] - per_group["selection_rate_lo"]
    width_image = image["selection_rate_hi"] - image["selection_rate_lo"]
    assert (width > 1.8 * width_image).all()  # sqrt(5) = 2.2 times wider in theory


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patients": ["p1", None, "p2"]}, r"patients: expected 3 ids without missing values"),
        ({"patients": ["p1", "p2"]}, r"patients: expected 3 ids"),
        ({"resample": "patients"}, r"resample: expected one of patient, image, got 'patients'"),
    ],
)
def test_patient_input_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        group_report([0, 1, 1], [0, 1, 0], ["a", "b", "b"], n_boot=0, **kwargs)


# ---------------------------------------------------------------- baselines of DI and SPD
def test_gaps_base_and_excess_by_hand():
    r = {**_rates_of(sel=[0.2, 0.5], tpr=[0.6, 0.9], fpr=[0.1, 0.4]),
         "prevalence": np.array([0.3, 0.6])}
    out = gaps(r)
    assert out["base_disparate_impact"] == pytest.approx(0.3 / 0.6)
    assert out["base_statistical_parity_difference"] == pytest.approx(0.3 - 0.6)
    # two groups: the ratio and the difference of the reported gaps
    assert out["excess_disparate_impact"] == pytest.approx((0.2 / 0.5) / (0.3 / 0.6))
    assert out["excess_statistical_parity_difference"] == pytest.approx((0.2 - 0.5) - (0.3 - 0.6))
    # without prevalences there is no baseline, and the other gaps are as before
    bare = gaps(_rates_of(sel=[0.2, 0.5], tpr=[0.6, 0.9], fpr=[0.1, 0.4]))
    assert np.isnan(bare["base_disparate_impact"]) and np.isnan(bare["excess_disparate_impact"])
    assert bare["disparate_impact"] == out["disparate_impact"]


def test_gaps_excess_picks_the_group_farthest_from_its_own_base():
    # reference sel 0.5, prevalence 0.5; group 0 selects like its labels (excess 1), group 1
    # selects 0.8 with prevalence 0.4: DI 1.6 / base 0.8 = excess 2
    r = {**_rates_of(sel=[0.2, 0.8, 0.5], tpr=[0.5] * 3, fpr=[0.1] * 3),
         "prevalence": np.array([0.2, 0.4, 0.5])}
    out = gaps(r)
    assert out["disparate_impact"] == pytest.approx(0.2 / 0.5)  # |log 0.4| > |log 1.6|
    assert out["base_disparate_impact"] == pytest.approx(0.2 / 0.5)  # |log 0.4| > |log 0.8|
    assert out["excess_disparate_impact"] == pytest.approx(1.6 / 0.8)
    assert out["excess_statistical_parity_difference"] == pytest.approx(0.3 - -0.1)


def _skewed_labels(y, g, groups):
    """Labels whose prevalence differs by group: the first group loses 60% of its positives."""
    drop = (g == groups[0]) & (np.random.default_rng(9).random(len(y)) < 0.6)
    return np.where(drop, 0, y)


@pytest.mark.parametrize("groups", [("a", "b"), ("x", "y", "z")])
def test_a_perfect_classifier_scores_the_base_rates_and_no_excess(groups):
    y, _, g, _ = _data(n=1500, seed=4, groups=groups)
    y = _skewed_labels(y, g, groups)
    _, between = group_report(y, y, g, n_boot=200, seed=0)
    b = between.set_index("metric")
    assert b.loc["base_disparate_impact", "value"] == pytest.approx(
        b.loc["disparate_impact", "value"])
    assert b.loc["base_statistical_parity_difference", "value"] == pytest.approx(
        b.loc["statistical_parity_difference", "value"])
    assert b.loc["base_disparate_impact", "value"] < 0.6  # the labels' own disparity
    # the excess is computed in each resample, so its interval is exactly [1, 1] / [0, 0],
    # while the base rates themselves vary from resample to resample
    assert b.loc["excess_disparate_impact", ["value", "lo", "hi"]].tolist() == pytest.approx(
        [1, 1, 1])
    assert b.loc["excess_statistical_parity_difference", ["value", "lo", "hi"]].tolist() == \
        pytest.approx([0, 0, 0], abs=1e-12)
    assert b.loc["base_disparate_impact", "lo"] < b.loc["base_disparate_impact", "hi"]


def test_the_base_rates_depend_on_the_labels_only():
    y, d, g, _ = _data(n=1000, seed=5)
    y = _skewed_labels(y, g, ("a", "b"))
    _, perfect = group_report(y, y, g, n_boot=0)
    _, model = group_report(y, d, g, n_boot=0)
    base = ["base_disparate_impact", "base_statistical_parity_difference"]
    pd.testing.assert_frame_equal(perfect.set_index("metric").loc[base],
                                  model.set_index("metric").loc[base])
    m = model.set_index("metric")["value"]
    assert m["excess_disparate_impact"] == pytest.approx(
        m["disparate_impact"] / m["base_disparate_impact"])
    assert m["excess_statistical_parity_difference"] == pytest.approx(
        m["statistical_parity_difference"] - m["base_statistical_parity_difference"])
