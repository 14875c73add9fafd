"""biaslab.fairness.evaluate (the grid of (scheme, method) test metrics, the shifted test set),
and what reads the grid: its flags, the pair recommended on validation, the headline."""

import numpy as np
import pandas as pd
import pytest

from biaslab.data.group_keys import group_keys
from biaslab.fairness.evaluate import (
    HEADLINE,
    evaluate_decisions,
    resample_unit,
    shifted_view,
)
from biaslab.fairness.headline import headline
from biaslab.fairness.metrics import GAPS, RATES

N = 400  # images; the first 300 are test rows, the rest validation


@pytest.fixture
def attributes():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, N)
    s = (rng.random(N) < np.where(label == 1, 0.8, 0.2)).astype(np.int8)
    return pd.DataFrame({
        "row": np.arange(N),
        "label": label.astype(np.int8),
        "s": s,
        "sex": rng.choice(["F", "M"], N),
    })


def _decisions(attributes, seed, shortcut):
    """A decisions table for methods fixed and youden; ``shortcut`` = how much S drives ŷ."""
    rng = np.random.default_rng(seed)
    y = attributes["label"].to_numpy()
    frames = []
    for method in ("fixed", "youden"):
        base = rng.random(N)
        # the decision the model takes with S forced to 0 and to 1
        d0 = (base < np.where(y == 1, 0.8 - shortcut, 0.2)).astype(np.int8)
        d1 = (base < np.where(y == 1, 0.8, 0.2 + shortcut)).astype(np.int8)
        s = attributes["s"].to_numpy()
        frames.append(pd.DataFrame({
            "row": attributes["row"],
            "split": np.where(np.arange(N) < 300, "test", "val"),
            "method": method,
            "threshold": 0.5,
            "score": np.clip(0.6 * y + 0.4 * base, 0, 1),
            "decision": np.where(s == 1, d1, d0),
            "decision_s0": d0,
            "decision_s1": d1,
        }))
    # shuffle rows: the evaluation must not depend on the table order
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=seed)


@pytest.fixture
def decisions(attributes):
    return {"none": _decisions(attributes, 1, 0.5), "reweighing": _decisions(attributes, 2, 0.1)}


def test_shifted_view_draws_s_independent_of_label_and_picks_the_decision():
    n = 20_000
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, n)
    test = pd.DataFrame({
        "row": np.arange(n),
        "label": label,
        "s": label,  # in the test set S is the label: the shifted view must break that
        "decision": label,
        "decision_s0": np.zeros(n, np.int8) + 10,  # impossible values to tell them apart
        "decision_s1": np.zeros(n, np.int8) + 20,
    })
    out = shifted_view(test, shift_p=0.3, seed=0)
    assert out["s"].mean() == pytest.approx(0.3, abs=0.02)
    for y in (0, 1):  # P(S=1 | y) = shift_p for both labels
        assert out.loc[out["label"] == y, "s"].mean() == pytest.approx(0.3, abs=0.025)
    np.testing.assert_array_equal(out["decision"], np.where(out["s"] == 1, 20, 10))
    # the input is untouched and the other columns are kept
    assert (test["s"] == label).all() and (test["decision"] == label).all()
    assert out.columns.tolist() == test.columns.tolist()
    pd.testing.assert_frame_equal(out, shifted_view(test, shift_p=0.3, seed=0))
    assert not out["s"].equals(shifted_view(test, shift_p=0.3, seed=1)["s"])


def test_shifted_view_does_not_depend_on_row_order():
    n = 500
    rng = np.random.default_rng(1)
    test = pd.DataFrame({"row": np.arange(n) * 3, "label": rng.integers(0, 2, n),
                         "decision_s0": np.zeros(n, np.int8), "decision_s1": np.ones(n, np.int8)})
    shuffled = test.sample(frac=1, random_state=0)
    a = shifted_view(test, 0.5, seed=0).set_index("row")["s"]
    b = shifted_view(shuffled, 0.5, seed=0).set_index("row")["s"]
    pd.testing.assert_series_equal(a, b.loc[a.index])


@pytest.mark.parametrize(("p", "value"), [(0.0, 0), (1.0, 1)])
def test_shifted_view_extremes(p, value):
    test = pd.DataFrame({"row": [0, 1, 2], "label": [0, 1, 1], "s": [1, 0, 1],
                         "decision": [0, 0, 0], "decision_s0": [0, 0, 0],
                         "decision_s1": [1, 1, 1]})
    out = shifted_view(test, p, seed=0)
    assert (out["s"] == value).all() and (out["decision"] == value).all()


def test_grid_has_one_row_per_scheme_and_method(attributes, decisions):
    grid, per_group = evaluate_decisions(decisions, attributes, ["s", "sex"], n_boot=0)
    assert list(zip(grid["scheme"], grid["method"], strict=True)) == [
        ("none", "fixed"), ("none", "youden"), ("reweighing", "fixed"), ("reweighing", "youden"),
    ]
    for col in ("n", *HEADLINE, "accuracy_lo", "accuracy_hi", "flip_rate_hi"):
        assert col in grid.columns
    for attr in ("s", "sex"):
        for m in GAPS:
            assert {f"{attr}.{m}", f"{attr}.{m}_lo", f"{attr}.{m}_hi"} <= set(grid.columns)
        assert f"{attr}.groups" in grid.columns
    for col in ("shifted.n", "shifted.accuracy", "shifted.balanced_accuracy",
                "shifted.flip_rate", "shifted.s.disparate_impact"):
        assert col in grid.columns
    assert "shifted.sex.disparate_impact" not in grid.columns  # the shifted set is about S
    assert (grid["n"] == 300).all() and (grid["shifted.n"] == 300).all()


def test_grid_values_match_a_direct_computation(attributes, decisions):
    grid, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=0)
    row = grid.set_index(["scheme", "method"]).loc[("none", "youden")]
    test = decisions["none"].query("split == 'test' and method == 'youden'").merge(
        attributes, on="row")
    y, d, s = test["label"], test["decision"], test["s"]
    assert row["accuracy"] == pytest.approx((y == d).mean())
    sel0, sel1 = d[s == 0].mean(), d[s == 1].mean()
    assert row["s.disparate_impact"] == pytest.approx(sel0 / sel1)
    assert row["flip_rate"] == pytest.approx((test["decision_s0"] != test["decision_s1"]).mean())
    sizes = s.value_counts()
    assert row["s.groups"] == f"s=0:{sizes[0]};s=1:{sizes[1]}"
    assert np.isnan(row["accuracy_lo"])  # n_boot=0: no intervals


def test_shortcut_shows_on_the_shifted_set(attributes, decisions):
    """A model that leans on S loses accuracy once S no longer follows the label."""
    grid, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=0)
    g = grid.set_index(["scheme", "method"])
    assert (g.loc["none", "shifted.accuracy"] < g.loc["none", "accuracy"] - 0.05).all()
    assert (g.loc["none", "flip_rate"] > g.loc["reweighing", "flip_rate"]).all()


def test_per_group_table(attributes, decisions):
    _, per_group = evaluate_decisions(decisions, attributes, ["s", "sex"], n_boot=0)
    assert per_group.columns[:5].tolist() == ["scheme", "method", "set", "attribute", "group"]
    assert set(RATES) <= set(per_group.columns)
    one = per_group.query("scheme == 'none' and method == 'fixed'")
    assert one.query("set == 'test'")["group"].tolist() == [
        "s=0", "s=1", "sex=F", "sex=M", "s=0&sex=F", "s=0&sex=M", "s=1&sex=F", "s=1&sex=M", "all"]
    # the intersection is spelt as biaslab.data.group_keys.group_keys spells it, as postprocess does
    assert set(one.query("attribute == 's&sex'")["group"]) == set(
        group_keys(attributes, ["s", "sex"]))
    assert one.query("set == 'shifted'")["group"].tolist() == ["s=0", "s=1", "all"]
    assert len(per_group) == 4 * (9 + 3)
    _, no_inter = evaluate_decisions(decisions, attributes, ["s", "sex"], n_boot=0,
                                     intersect=False)
    assert len(no_inter) == 4 * (5 + 3)


def test_without_an_injected_bias_there_is_no_shifted_set(attributes, decisions):
    plain = {k: v.drop(columns=["decision_s0", "decision_s1"]) for k, v in decisions.items()}
    grid, per_group = evaluate_decisions(plain, attributes.drop(columns="s"), ["sex"], n_boot=0)
    assert not any(c.startswith("shifted.") for c in grid.columns)
    assert "flip_rate" not in grid.columns
    assert set(per_group["set"]) == {"test"}


def test_results_do_not_depend_on_row_order(attributes, decisions):
    a, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=10)
    shuffled = {k: v.sample(frac=1.0, random_state=9) for k, v in decisions.items()}
    b, _ = evaluate_decisions(shuffled, attributes.sample(frac=1.0, random_state=3), ["s"],
                              n_boot=10)
    shifted = [c for c in a.columns if c.startswith("shifted.")]
    # the test-set figures are order-free; the shifted set draws S row by row in table order
    pd.testing.assert_frame_equal(a.drop(columns=shifted), b.drop(columns=shifted))


def test_missing_group_attribute_is_named(attributes, decisions):
    with pytest.raises(ValueError, match=r"evaluate\.groups: column\(s\) \['age_group'\] not "
                                         r"found; available: \['row', 'label', 's', 'sex'\]"):
        evaluate_decisions(decisions, attributes, ["s", "age_group"], n_boot=0)


def test_min_group_size_violation_raises(attributes, decisions):
    attributes = attributes.copy()
    # four test rows in group X, one per (s, label) cell, so that every rate is defined,
    # for X alone and intersected with s; each image is counted once, not once per method
    rows = [attributes.query(f"row < 300 and s == {s} and label == {y}")["row"].iloc[0]
            for s in (0, 1) for y in (0, 1)]
    attributes.loc[attributes["row"].isin(rows), "sex"] = "X"
    with pytest.raises(ValueError, match=r"scheme 'none'.*\{'X': 4\} of 'sex' have fewer than "
                                         r"evaluate\.min_group_size=5 rows"):
        evaluate_decisions(decisions, attributes, ["s", "sex"], n_boot=0, min_group_size=5)
    grid, _ = evaluate_decisions(decisions, attributes, ["s", "sex"], n_boot=0, min_group_size=4)
    assert len(grid) == 4


def test_group_absent_from_the_test_split_raises(attributes, decisions):
    """A group of the data with no test row is not silently left out of the report."""
    attributes = attributes.copy()
    attributes.loc[350:, "sex"] = "X"  # validation rows only
    with pytest.raises(ValueError, match=r"\{'X': 0\} of 'sex' have fewer than "
                                         r"evaluate\.min_group_size=1"):
        evaluate_decisions(decisions, attributes, ["sex"], n_boot=0)


def test_headline_has_a_few_figures_of_the_recommended_and_the_baseline_pair(attributes,
                                                                             decisions):
    grid, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=0)
    out = headline(grid, ["s"])
    assert set(out) == {"recommended", "baseline"}
    assert out["baseline"]["pair"] == "none/fixed"
    best = grid[grid["recommended"]].iloc[0]
    figures = dict(out["recommended"])
    assert figures.pop("pair") == f"{best['scheme']}/{best['method']}"
    assert set(figures) == {"balanced_accuracy", "flip_rate", "shifted.accuracy",
                            "s.disparate_impact", "s.excess_disparate_impact",
                            "s.equalized_odds_difference", "degenerate"}
    assert figures.pop("degenerate") is False
    for key, value in figures.items():
        assert value == round(float(best[key]), 4), key
    # few enough for a terminal: dvc exp show has a column per figure
    assert sum(len(v) for v in out.values()) <= 16


def test_headline_writes_nan_as_none_and_skips_absent_figures():
    grid = pd.DataFrame({"scheme": ["none"], "method": ["fixed"], "balanced_accuracy": [0.91234],
                         "s.disparate_impact": [np.nan], "recommended": [False]})
    assert headline(grid, ["s"]) == {
        "recommended": {"pair": None},
        "baseline": {"pair": "none/fixed", "balanced_accuracy": 0.9123,
                     "s.disparate_impact": None},
    }


# ---------------------------------------------------------------- degenerate models
def _with_method(decisions, method, **columns):
    """The 'none' decisions plus a method whose test rows get ``columns`` (constant values)."""
    table = decisions["none"]
    extra = table[table["method"] == "fixed"].assign(method=method)
    test = extra["split"] == "test"
    for name, value in columns.items():
        extra[name] = extra[name].where(~test, value).astype(extra[name].dtype)
    return {"none": pd.concat([table, extra], ignore_index=True)}


def test_constant_decisions_and_scores_are_flagged(attributes, decisions):
    flat = _with_method(decisions, "constant", decision=0, decision_s0=0, decision_s1=0,
                        score=0.5)
    grid, _ = evaluate_decisions(flat, attributes, ["s"], n_boot=50)
    row = grid.set_index("method").loc["constant"]
    assert row["degenerate"]
    assert row["warning"] == ("constant decisions on the test split (all 0); constant scores on "
                              "the test split (0.5); AUC 0.500 [0.500, 0.500] does not exclude "
                              "chance (0.5)")
    good = grid.set_index("method").loc[["fixed", "youden"]]
    assert not good["degenerate"].any() and (good["warning"] == "").all()
    assert headline(grid, ["s"])["baseline"]["degenerate"] is False


def test_an_auc_interval_around_one_half_is_flagged(attributes, decisions):
    noise = np.random.default_rng(7).random(N)  # scores that know nothing of the label
    table = decisions["none"].assign(score=lambda t: noise[t["row"].to_numpy()])
    grid, _ = evaluate_decisions({"none": table}, attributes, ["s"], n_boot=200)
    assert grid["degenerate"].all()
    assert grid["warning"].str.fullmatch(
        r"AUC 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\] does not exclude chance \(0\.5\)").all()
    # without intervals (n_boot = 0) the AUC is not judged: no flag from it
    grid, _ = evaluate_decisions({"none": table}, attributes, ["s"], n_boot=0)
    assert not grid["degenerate"].any()


# ---------------------------------------------------------------- the stage
def _stage_files(tmp_path, attributes, decisions):
    attributes[["row", "label", "sex"]].to_parquet(tmp_path / "index.parquet")
    attributes[["row", "s"]].to_parquet(tmp_path / "bias.parquet")
    for scheme, table in decisions.items():
        (tmp_path / "decisions" / scheme).mkdir(parents=True)
        table.to_parquet(tmp_path / "decisions" / scheme / "seed0.parquet")
    (tmp_path / "params.yaml").write_text(
        "evaluate: {groups: [s, sex], n_boot: 20, n_perm: 99}\n"
        "weights: {schemes: [none, reweighing]}\ntrain: {seeds: [0]}\n")
    outs = {"headline": "out/fairness.json", "grid": "out/grid.csv", "seeds": "out/seeds.csv",
            "groups": "out/groups.csv"}
    return ["evaluate", "--decisions", "decisions", "--index", "index.parquet",
            "--bias", "bias.parquet", *[a for k, v in outs.items() for a in (f"--{k}", v)]]


def test_stage_succeeds_with_an_honest_summary_when_figures_are_all_nan(
        tmp_path, monkeypatch, capsys, attributes, decisions):
    """No positive test image: balanced accuracy, AUC and every TPR gap are undefined."""
    import stages.evaluate

    attributes = attributes.assign(label=np.where(attributes["row"] < 300, 0, 1).astype(np.int8))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", _stage_files(tmp_path, attributes, decisions))
    stages.run(stages.evaluate.main, "evaluate")
    out, err = capsys.readouterr()
    # the library's warnings reach the user as the stage's own lines, not Python's format
    assert "evaluate: warning: " in err and "is undefined for group" in err
    assert "UserWarning" not in err
    assert "evaluate: 4 (scheme, method) pairs, 0 on the validation Pareto front; no pair " \
           "recommended (balanced accuracy or fairness cost undefined on validation); balanced " \
           "accuracy undefined for every pair (a class absent from test) -> out/fairness.json" \
           in out
    grid = pd.read_csv(tmp_path / "out" / "grid.csv")
    assert grid["balanced_accuracy"].isna().all() and len(grid) == 4
    assert (tmp_path / "out" / "fairness.json").is_file()


def test_stage_that_fails_writes_nothing(tmp_path, monkeypatch, capsys, attributes, decisions):
    import stages.evaluate

    def broken(grid, gap):
        raise ValueError("summary: cannot be computed")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", _stage_files(tmp_path, attributes, decisions))
    monkeypatch.setattr(stages.evaluate, "summary_line", broken)
    with pytest.raises(SystemExit):
        stages.evaluate.run(stages.evaluate.main, "evaluate")
    assert "evaluate: error: summary: cannot be computed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_stage_warns_about_a_degenerate_model(tmp_path, monkeypatch, capsys, attributes,
                                              decisions):
    import stages.evaluate

    decisions = {**_with_method(decisions, "constant", decision=1, decision_s0=1, decision_s1=1),
                 "reweighing": decisions["reweighing"]}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", _stage_files(tmp_path, attributes, decisions))
    stages.run(stages.evaluate.main, "evaluate")
    captured = capsys.readouterr()
    assert ("evaluate: warning: none/constant: degenerate model: constant decisions on the test "
            "split (all 1)") in captured.err
    assert "; 1 degenerate -> out/fairness.json" in captured.out
    grid = pd.read_csv(tmp_path / "out" / "grid.csv", keep_default_na=False)
    assert grid.set_index("method").loc["constant", "warning"].startswith("constant decisions")
    assert {"val.balanced_accuracy", "val.fairness_cost", "pareto"} <= set(grid.columns)
    assert grid["recommended"].sum() == 1
    assert "on the validation Pareto front; recommended " in captured.out


def test_without_validation_rows_nothing_is_recommended(attributes, decisions):
    test_only = {k: v[v["split"] == "test"] for k, v in decisions.items()}
    grid, _ = evaluate_decisions(test_only, attributes, ["s"], n_boot=0)
    assert grid[["val.balanced_accuracy", "val.fairness_cost"]].isna().all(axis=None)
    assert not grid["pareto"].any() and not grid["recommended"].any()
    assert grid["balanced_accuracy"].notna().all()  # the test figures are untouched


# ---------------------------------------------------------------- patients, too few rows
def _with_patients(attributes):
    """Three images per patient; the images of every tenth patient have no id."""
    patient = (attributes["row"] // 3).astype(str).radd("p")
    return attributes.assign(patient_id=patient.where(attributes["row"] % 30 >= 3)
                             .astype("string"))


@pytest.mark.parametrize(("resample", "ids", "unit"), [
    ("auto", True, "patient"), ("auto", False, "image"), ("image", True, "image"),
    ("patient", True, "patient"),
])
def test_resample_unit(attributes, resample, ids, unit):
    table = _with_patients(attributes) if ids else attributes
    assert resample_unit(table, resample) == unit
    # a patient_id column with no id at all (digits) has no patients
    assert resample_unit(attributes.assign(patient_id=pd.NA), "auto") == "image"


def test_resample_unit_errors(attributes):
    with pytest.raises(ValueError, match=r"evaluate\.resample = 'patient' needs patient ids"):
        resample_unit(attributes.assign(patient_id=pd.NA), "patient")
    with pytest.raises(ValueError, match=r"evaluate\.resample = 'cluster'; expected one of "
                                         r"auto, patient, image"):
        resample_unit(attributes, "cluster")


def test_patients_are_counted_and_resampled(attributes, decisions):
    table = _with_patients(attributes)
    grid, per_group = evaluate_decisions(decisions, table, ["s"], n_boot=100)
    test = table[table["row"] < 300]
    # an image without a patient id is a patient of its own
    patients = test["patient_id"].nunique() + test["patient_id"].isna().sum()
    assert (grid["patients"] == patients).all() and (grid["shifted.patients"] == patients).all()
    assert (grid["n"] == 300).all()
    one = per_group.query("scheme == 'none' and method == 'fixed' and set == 'test'")
    s0 = test[test["s"] == 0]
    row = one.set_index("group").loc["s=0"]
    assert row["patients"] == s0["patient_id"].nunique() + s0["patient_id"].isna().sum()
    assert (row["positives"], row["negatives"]) == ((s0["label"] == 1).sum(),
                                                    (s0["label"] == 0).sum())
    # the image bootstrap on the same rows: the same figures, other intervals
    image, _ = evaluate_decisions(decisions, table, ["s"], n_boot=100, resample="image")
    plain, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=100)
    counts = ["patients", "shifted.patients"]
    pd.testing.assert_frame_equal(image.drop(columns=counts), plain.drop(columns=counts))
    assert not grid["accuracy_lo"].equals(image["accuracy_lo"])
    pd.testing.assert_series_equal(grid["accuracy"], image["accuracy"])


def test_gaps_of_a_group_with_too_few_positives_are_missing(attributes, decisions):
    attributes = attributes.copy()
    s0 = attributes.index[(attributes["row"] < 300) & (attributes["s"] == 0)]
    attributes.loc[s0, "label"] = 0
    attributes.loc[s0[:3], "label"] = 1  # 3 positives in s=0 on the test split
    grid, per_group = evaluate_decisions(decisions, attributes, ["s"], n_boot=50)
    row = grid.iloc[0]
    assert row["s.insufficient"] == (
        "equal_opportunity_difference, average_odds_difference, equalized_odds_difference, "
        "worst_group_balanced_accuracy, auc_gap: s=0 has 3 positives (< evaluate.min_cell = 5)")
    assert np.isnan(row["s.equal_opportunity_difference"])
    assert np.isnan(row["s.equal_opportunity_difference_lo"])
    assert not np.isnan(row["s.disparate_impact_lo"])
    assert row["insufficient"] == "" and row["shifted.s.insufficient"] == ""
    tpr = per_group.query("set == 'test' and group == 's=0'")
    assert tpr["tpr"].isna().all() and (tpr["positives"] == 3).all()
    assert tpr["insufficient"].str.startswith("balanced_accuracy, tpr, auc: 3 positives").all()
    # with min_cell = 3 they are back
    grid, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=50, min_cell=3)
    assert (grid["s.insufficient"] == "").all()
    assert grid["s.equal_opportunity_difference"].notna().all()


def test_stage_resamples_patients_and_says_what_is_missing(tmp_path, monkeypatch, capsys,
                                                           attributes, decisions):
    import stages.evaluate

    attributes = _with_patients(attributes)
    s0 = attributes.index[(attributes["row"] < 300) & (attributes["s"] == 0)]
    attributes.loc[s0, "label"] = 0
    attributes.loc[s0[:4], "label"] = 1
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", _stage_files(tmp_path, attributes, decisions))
    attributes[["row", "label", "sex", "patient_id"]].to_parquet(tmp_path / "index.parquet")
    stages.run(stages.evaluate.main, "evaluate")
    err = capsys.readouterr().err
    assert ("evaluate: warning: too few test images, gaps missing: s: "
            "equal_opportunity_difference, average_odds_difference, equalized_odds_difference, "
            "worst_group_balanced_accuracy, auc_gap: s=0 has 4 positives (< evaluate.min_cell "
            "= 5)") in err.splitlines()
    grid = pd.read_csv(tmp_path / "out" / "grid.csv", keep_default_na=False)
    assert (grid["patients"] < grid["n"]).all()
    groups = pd.read_csv(tmp_path / "out" / "groups.csv")
    assert {"patients", "positives", "negatives", "insufficient", "undefined"} <= set(groups)


def test_a_method_postprocess_could_not_fit_is_a_row_saying_why():
    from biaslab.fairness.flags import add_not_applicable

    grid = pd.DataFrame({"scheme": ["none"], "method": ["fixed"], "balanced_accuracy": [0.9],
                         "warning": [""], "degenerate": [False], "pareto": [True]})
    fitted = {"none": {"fixed": {"threshold": 0.5},
                       "equalized_odds": {"not_applicable": "group s=0 has one class"}}}
    out = add_not_applicable(grid, fitted)
    assert list(out["method"]) == ["fixed", "equalized_odds"]
    row = out.iloc[1]
    assert row["warning"] == "not applicable: group s=0 has one class"
    assert np.isnan(row["balanced_accuracy"]) and not row["pareto"]
    assert add_not_applicable(grid, {"none": {"fixed": {"threshold": 0.5}}}).equals(grid)


# ---------------------------------------------------------------- baselines, choosing on val
def test_fairness_cost_is_symmetric_for_disparate_impact():
    from biaslab.fairness.recommend import fairness_cost

    cost = fairness_cost(pd.Series([0.8, 1.25, 1.0, 0.0, np.nan]), "disparate_impact")
    assert cost[0] == pytest.approx(cost[1]) and cost[0] == pytest.approx(np.log(1.25))
    assert cost[2] == 0 and np.isinf(cost[3]) and np.isnan(cost[4])
    # a difference keeps |gap|
    np.testing.assert_allclose(
        fairness_cost(pd.Series([-0.2, 0.2]), "statistical_parity_difference"), [0.2, 0.2])


def test_recommend_takes_the_fairest_pair_within_the_accuracy_loss():
    from biaslab.fairness.recommend import recommend

    score = np.array([0.90, 0.89, 0.87, 0.95, np.nan, 0.885])
    cost = np.array([0.30, 0.10, 0.01, np.nan, 0.0, 0.20])  # 5: dominated by 1
    # within 0.02 of the best defined pair (0.90): rows 0, 1 (5 is off the front)
    assert recommend(score, cost, 0.02).tolist() == [False, True, False, False, False, False]
    assert recommend(score, cost, 0.0).tolist() == [True] + [False] * 5
    assert recommend(score, cost, 0.05).tolist() == [False, False, True, False, False, False]
    # no pair with both figures: none recommended
    assert not recommend([np.nan, 0.9], [0.1, np.nan], 0.02).any()


def _val_test_disagree(attributes):
    """Scheme none: ``fixed`` is perfect on validation and noisy on test; ``youden`` the
    opposite. The noisy decisions follow the label one time in five, else a coin."""
    rng = np.random.default_rng(3)
    y = attributes["label"].to_numpy()
    is_test = np.arange(N) < 300
    noisy = np.where(rng.random(N) < 0.2, y, rng.integers(0, 2, N)).astype(np.int8)
    frames = [pd.DataFrame({"row": attributes["row"], "split": np.where(is_test, "test", "val"),
                            "method": method, "threshold": 0.5, "decision": decision})
              for method, decision in (("fixed", np.where(is_test, noisy, y)),
                                       ("youden", np.where(is_test, y, noisy)))]
    return {"none": pd.concat(frames, ignore_index=True)}


def test_pareto_front_and_recommendation_are_chosen_on_validation(attributes):
    from biaslab.fairness.headline import summary_line

    decisions = _val_test_disagree(attributes)
    # the raw DI (still selectable): the labels' own disparity makes the noise look fair
    grid, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=0,
                                 pareto_gap="disparate_impact")
    g = grid.set_index("method")
    # test figures (what is reported) favour youden; validation favours fixed
    assert g.loc["youden", "balanced_accuracy"] == 1
    assert g.loc["fixed", "val.balanced_accuracy"] == 1
    assert g.loc["fixed", "balanced_accuracy"] < 0.7 and g.loc["youden",
                                                               "val.balanced_accuracy"] < 0.7
    assert grid["recommended"].tolist() == [True, False]
    # the noisy decisions are fairer (closer to DI 1) than the labels: both on the front
    assert g.loc["youden", "val.fairness_cost"] < g.loc["fixed", "val.fairness_cost"]
    assert grid["pareto"].all()
    # the cost columns: |log DI| of the test gap and of the validation one
    assert g.loc["youden", "fairness_cost"] == pytest.approx(
        abs(np.log(g.loc["youden", "s.disparate_impact"])))
    # trading up to all accuracy for that fairness would pick the noise, but fixed, perfect on
    # validation, is more accurate and no worse on any error-rate gap: the noise is never picked
    assert g.loc["youden", "dominated_by"] == "none/fixed" and g.loc["fixed", "dominated_by"] == ""
    loose, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=0, max_accuracy_loss=1,
                                  pareto_gap="disparate_impact")
    assert loose["recommended"].tolist() == [True, False]
    # with the default cost (equalized odds), the perfect pair pays nothing: the only one on
    # the front
    default, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=0, max_accuracy_loss=1)
    assert default["pareto"].tolist() == [True, False]
    assert default["recommended"].tolist() == [True, False]
    # the summary names the recommended pair with its test figures
    fixed = g.loc["fixed"]
    assert summary_line(grid, "s.disparate_impact") == (
        "2 (scheme, method) pairs, 2 on the validation Pareto front; recommended none/fixed "
        f"(chosen on validation): test balanced accuracy {fixed['balanced_accuracy']:.3f}, "
        f"s.disparate_impact {fixed['s.disparate_impact']:.3f}")


def test_base_rates_and_excess_in_the_grid(attributes):
    grid, _ = evaluate_decisions(_val_test_disagree(attributes), attributes, ["s"], n_boot=50)
    g = grid.set_index("method")
    perfect = g.loc["youden"]  # decisions = labels on test
    assert perfect["s.base_disparate_impact"] == pytest.approx(perfect["s.disparate_impact"])
    assert perfect["s.base_disparate_impact"] < 0.5  # S follows the label in these data
    assert perfect["s.excess_disparate_impact"] == pytest.approx(1)
    assert perfect["s.excess_statistical_parity_difference"] == pytest.approx(0, abs=1e-12)
    assert perfect["s.excess_disparate_impact_lo"] == pytest.approx(1)
    # the base rates are the test labels': the same for every method
    assert g.loc["fixed", "s.base_disparate_impact"] == perfect["s.base_disparate_impact"]
    noisy = g.loc["fixed"]
    assert noisy["s.excess_disparate_impact"] == pytest.approx(
        noisy["s.disparate_impact"] / noisy["s.base_disparate_impact"])
    assert noisy["s.excess_disparate_impact"] > 1  # the noisy decisions shrink the disparity


def test_a_pair_not_applicable_is_never_recommended(attributes, decisions):
    from biaslab.fairness.flags import add_not_applicable
    from biaslab.fairness.headline import summary_line

    grid, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=0)
    assert grid["recommended"].sum() == 1
    out = add_not_applicable(grid, {
        s: {"fixed": {}, "youden": {}, "equalized_odds": {"not_applicable": "one class"}}
        for s in ("none", "reweighing")})
    skipped = out[out["method"] == "equalized_odds"]
    assert len(skipped) == 2 and not skipped["recommended"].any() and not skipped["pareto"].any()
    assert out["recommended"].dtype == bool and out["recommended"].sum() == 1
    best = out[out["recommended"]].iloc[0]
    assert f"recommended {best['scheme']}/{best['method']} (chosen on validation)" in \
        summary_line(out, "s.disparate_impact")


def test_every_gap_has_a_p_value_corrected_across_the_run(attributes, decisions):
    from biaslab.fairness.corrections import adjust

    grid, _ = evaluate_decisions(decisions, attributes, ["s", "sex"], n_boot=0, n_perm=199,
                                 correction="holm")
    p_cols = [c for c in grid.columns if c.endswith("_p")]
    assert "s.disparate_impact_p" in p_cols and "s&sex.equal_opportunity_difference_p" in p_cols
    assert "shifted.s.disparate_impact_p" in p_cols
    assert not [c for c in p_cols if ".base_" in c]  # the labels' own gaps are not tested
    family = grid[p_cols].to_numpy(dtype=float)
    defined = family[~np.isnan(family)]
    assert ((defined >= 1 / 200) & (defined <= 1)).all()
    # one family: Holm over every p-value of the run, not per row or per column
    expected = adjust(family.ravel(), "holm").reshape(family.shape)
    np.testing.assert_array_equal(grid[[c + "_adj" for c in p_cols]].to_numpy(dtype=float),
                                  expected)
    # a gap reported missing (too few cases) has no p-value either
    for col in p_cols:
        gap = grid[col.removesuffix("_p")]
        assert grid.loc[gap.isna(), col].isna().all()
    off, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=0, n_perm=0)
    assert not [c for c in off.columns if c.endswith(("_p", "_p_adj"))]
