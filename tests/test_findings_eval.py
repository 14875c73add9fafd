"""Multi-label evaluation (biaslab.fairness.findings, biaslab.fairness.underdiagnosis): a known
TPR gap in one finding found, the others not, the p-values corrected over all findings together,
underdiagnosis as its definition says, single-label input unchanged."""

import numpy as np
import pandas as pd
import pytest

from biaslab.fairness.evaluate import evaluate_seeds
from biaslab.fairness.findings import (
    ANY,
    any_thresholds,
    by_finding,
    correct_together,
    evaluate_findings,
    findings_headline,
    reach_warning,
    worst_finding,
)
from biaslab.fairness.recommend import choose
from biaslab.fairness.thresholds.findings import decide_findings, is_multilabel
from biaslab.fairness.underdiagnosis import any_finding_decisions, rates

FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion"]
GAPPED = "Cardiomegaly"  # TPR 0.9 for sex=M, 0.5 for sex=F; every other finding 0.75 for both
OPTIONS = dict(n_boot=200, n_perm=200, seed=0, intersect=False, min_cell=5)


def _data(seed: int, patients: int = 400, gap: float = 0.4):
    """An index with label_<F> columns (two images per patient, sex per patient) and the long
    test+val decisions of one model: finding F's decision is 1 with probability TPR (label 1)
    or 0.1 (label 0), TPR depending on sex for :data:`GAPPED` only."""
    rng = np.random.default_rng(seed)
    n = 2 * patients
    patient = np.repeat(np.arange(patients), 2)
    sex = np.where(rng.random(patients) < 0.5, "F", "M")[patient]
    index = pd.DataFrame({"row": np.arange(n), "patient_id": patient.astype(str), "sex": sex})
    frames = []
    for finding in FINDINGS:
        y = (rng.random(n) < 0.4).astype(np.int8)
        index[f"label_{finding}"] = y
        tpr = np.where(sex == "M", 0.75 + gap / 2, 0.75 - gap / 2) if finding == GAPPED else 0.75
        u = rng.random(n)
        decision = (u < np.where(y == 1, tpr, 0.1)).astype(np.int8)
        frames.append(pd.DataFrame({
            "row": np.arange(n), "finding": finding,
            "split": np.where(patient % 4 == 0, "val", "test"), "method": "fixed",
            "threshold": 0.5, "score": np.where(decision == 1, 0.5 + u / 2, u / 2),
            "decision": decision}))
    index["label"] = index[[f"label_{f}" for f in FINDINGS]].max(axis=1).astype(np.int8)
    return index, pd.concat(frames, ignore_index=True)


def _evaluate(seed: int, gap: float = 0.4, **options):
    index, decisions = _data(seed, gap=gap)
    return evaluate_findings({"none": {0: decisions}}, index, ["sex"], **(OPTIONS | options))


def test_the_known_gap_is_found_and_the_others_are_not():
    # the smallest p-value n_perm permutations can give is 1 / (n_perm + 1); Holm multiplies it
    # by the family's size (about 40 tests here): 2000 permutations let a real gap pass 0.05
    evaluation = _evaluate(0, n_perm=2000)
    assert evaluation.tests * (1 / 2001) < 0.05
    grid = evaluation.grid.set_index("finding")
    eod = "sex.equal_opportunity_difference"
    assert list(grid.index) == [*FINDINGS, ANY]
    assert grid.loc[GAPPED, f"{eod}_hi"] < 0  # F's TPR below M's: the interval excludes 0
    assert grid.loc[GAPPED, f"{eod}_p_adj"] <= 0.05
    for finding in set(FINDINGS) - {GAPPED}:
        assert grid.loc[finding, f"{eod}_lo"] < 0 < grid.loc[finding, f"{eod}_hi"]
        assert grid.loc[finding, f"{eod}_p_adj"] > 0.05


def test_the_correction_covers_every_finding_together():
    evaluation = _evaluate(1)
    grid = evaluation.grid
    p_columns = [c for c in grid.columns if c.endswith("_p") and "underdiagnosis" not in c]
    p = grid[p_columns].to_numpy(dtype=float)
    assert evaluation.tests == np.count_nonzero(~np.isnan(p))
    assert evaluation.tests > len(p_columns)  # more than one finding's gaps in the family
    # Holm over the family: the smallest p-value is multiplied by the family's size
    smallest = np.nanargmin(p)
    adjusted = grid[[c + "_adj" for c in p_columns]].to_numpy(dtype=float).ravel()[smallest]
    assert adjusted == pytest.approx(min(1.0, evaluation.tests * np.nanmin(p)))
    # corrected alone, a finding's p-values would be smaller: the family costs power
    alone = evaluate_seeds({"none": {0: _data(1)[1].query("finding == @GAPPED")
                                     .drop(columns="finding")}},
                           _data(1)[0].assign(label=lambda t: t[f"label_{GAPPED}"]), ["sex"],
                           **OPTIONS).grid
    column = "sex.equal_opportunity_difference_p_adj"
    assert alone[column].iloc[0] <= grid.set_index("finding").loc[GAPPED, column]


def test_null_findings_are_flagged_at_about_the_nominal_rate():
    # no gap anywhere: over seeded repetitions, the raw p-values of the EOD reject at about
    # alpha, and the corrected ones (one family per run) rarely reject at all
    raw, adjusted, runs = 0, 0, 20
    for seed in range(runs):
        grid = _evaluate(100 + seed, gap=0.0, n_boot=0).grid
        grid = grid[grid["finding"] != ANY]
        raw += int((grid["sex.equal_opportunity_difference_p"] <= 0.05).sum())
        adjusted += int((grid.filter(like="_p_adj").to_numpy(dtype=float) <= 0.05).any())
    tests = runs * len(FINDINGS)
    assert raw <= 0.05 * tests + 3 * np.sqrt(0.05 * 0.95 * tests)  # binomial, 3 sd
    assert adjusted <= 0.05 * runs + 3 * np.sqrt(0.05 * 0.95 * runs)


def test_underdiagnosis_by_hand():
    # six images, two findings; "No Finding" = both decisions 0
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]])
    called = np.array([[0, 0], [0, 1], [0, 0], [0, 0], [1, 0], [0, 0]])
    sex = np.array(["F", "F", "F", "M", "M", "M"])
    long = pd.concat([pd.DataFrame({
        "row": np.arange(6), "finding": f, "split": "test", "method": "fixed",
        "threshold": 0.5, "score": called[:, k] * 0.8, "decision": called[:, k]})
        for k, f in enumerate(["A", "B"])], ignore_index=True)
    combined = any_finding_decisions(long).sort_values("row")
    assert combined["decision"].tolist() == [0, 1, 0, 0, 1, 0]
    # by hand: F has 3 images with a finding, rows 0 and 2 called No Finding: 2/3;
    # M has 2 (rows 4, 5), row 5 missed: 1/2
    index = pd.DataFrame({"row": np.arange(6), "sex": sex, "label_A": labels[:, 0],
                          "label_B": labels[:, 1], "label": labels.max(axis=1)})
    evaluation = evaluate_findings({"none": {0: long}}, index, ["sex"], n_boot=0,
                                   min_cell=1, intersect=False)
    groups = evaluation.per_group
    table = rates(groups[(groups["finding"] == ANY) & (groups["attribute"] == "sex")])
    by_group = table.set_index("group")["underdiagnosis_rate"]
    assert by_group["sex=F"] == pytest.approx(2 / 3)
    assert by_group["sex=M"] == pytest.approx(1 / 2)
    assert table.set_index("group")["with_finding"].to_dict() == {"sex=F": 3, "sex=M": 2}
    any_row = evaluation.grid.set_index("finding").loc[ANY]
    # the gap: F (2/3) against the reference M (1/2)
    assert any_row["sex.underdiagnosis_gap"] == pytest.approx(2 / 3 - 1 / 2)


def test_underdiagnosis_interval_is_the_any_finding_fnr_interval():
    evaluation = _evaluate(2)
    row = evaluation.grid.set_index("finding").loc[ANY]
    eod = "sex.equal_opportunity_difference"
    assert row["sex.underdiagnosis_gap"] == pytest.approx(-row[eod])
    assert row["sex.underdiagnosis_gap_lo"] == pytest.approx(-row[f"{eod}_hi"])
    assert row["sex.underdiagnosis_gap_p_adj"] == row[f"{eod}_p_adj"]
    groups = evaluation.per_group.query("finding == @ANY and attribute == 'sex'")
    table = rates(groups)
    assert (table["underdiagnosis_rate_lo"] <= table["underdiagnosis_rate"]).all()
    assert (table["underdiagnosis_rate"] <= table["underdiagnosis_rate_hi"]).all()


def test_a_rare_finding_gets_too_few_cases_not_a_zero_width_interval():
    index, decisions = _data(3)
    rare = index["label_Effusion"].to_numpy().copy()
    rare[:] = 0
    rare[(index["sex"] == "F").to_numpy().nonzero()[0][:3]] = 1  # 3 positives among women
    index["label_Effusion"] = rare
    grid = evaluate_findings({"none": {0: decisions}}, index, ["sex"], **OPTIONS).grid
    row = grid.set_index("finding").loc["Effusion"]
    assert np.isnan(row["sex.equal_opportunity_difference"])
    assert np.isnan(row["sex.equal_opportunity_difference_lo"])
    assert "positives" in row["sex.insufficient"]


def test_single_label_input_is_not_multilabel_and_unchanged():
    index, decisions = _data(4)
    one = decisions.query("finding == 'Atelectasis'").drop(columns="finding")
    assert not is_multilabel(one)
    attrs = index.assign(label=index["label_Atelectasis"])
    single = evaluate_seeds({"none": {0: one}}, attrs, ["sex"], **OPTIONS).grid
    multi = evaluate_findings({"none": {0: decisions}}, index, ["sex"], **OPTIONS).grid
    row = multi[multi["finding"] == "Atelectasis"].drop(columns="finding").reset_index(
        drop=True)
    # every figure but the correction (which counts the other findings too) is the same
    same = [c for c in single.columns if not c.endswith("_p_adj")]
    pd.testing.assert_frame_equal(row[same], single[same], check_dtype=False)


def test_decide_findings_fits_each_finding_on_its_own_labels():
    index, decisions = _data(5)
    preds = decisions[["row", "finding", "split", "score"]].merge(index, on="row")
    val, test = preds[preds["split"] == "val"], preds[preds["split"] == "test"]
    out, fitted = decide_findings(["fixed", "youden"], val, test, [], fixed_threshold=0.5,
                                  tolerance=0.0, seed=0)
    assert list(out.columns[:3]) == ["row", "finding", "split"]
    assert list(fitted) == FINDINGS
    assert len(out) == 2 * len(decisions)  # two methods, every (row, finding)
    youden = {f: fitted[f]["youden"] for f in FINDINGS}
    assert len({str(v) for v in youden.values()}) > 1  # fit on each finding's labels


def test_any_thresholds_and_headline():
    fitted = {"A": {"fixed": {"threshold": 0.5}, "parity": {"not_applicable": "one class"}},
              "B": {"fixed": {"threshold": 0.5}, "parity": {"threshold": 0.3}}}
    assert any_thresholds(fitted) == {"fixed": {}, "parity": {"not_applicable": "A: one class"}}
    evaluation = _evaluate(6)
    grid = by_finding(evaluation.grid, lambda f, rows: choose(rows, 0.02))
    assert worst_finding(grid) == GAPPED
    figures = findings_headline(grid, ["sex"], evaluation.tests)
    assert figures["worst_finding"] == GAPPED and figures["findings"] == len(FINDINGS)
    assert figures["tests_corrected"] == evaluation.tests


def test_correct_together_ignores_missing_gaps():
    grid = pd.DataFrame({"finding": ["A", "B"], "x.g_p": [0.01, np.nan], "y.g_p": [0.02, 0.5]})
    out, tests = correct_together(grid, "holm")
    assert tests == 3
    assert out["x.g_p_adj"].iloc[0] == pytest.approx(0.03)
    assert np.isnan(out["x.g_p_adj"].iloc[1])


def test_postprocess_and_evaluate_stages_on_long_predictions(tmp_path, monkeypatch, capsys):
    """The pipeline's stages on a multi-label run's files: decisions per finding, grid.csv and
    groups.csv with a finding column first, the headline naming the worst finding."""
    import json
    from pathlib import Path

    import stages
    import stages.evaluate
    import stages.postprocess

    index, decisions = _data(7)
    monkeypatch.chdir(tmp_path)
    index.to_parquet("index.parquet")
    index[["row"]].assign(s=(index["sex"] == "M").astype(np.int8)).to_parquet("bias.parquet")
    Path("params.yaml").write_text(
        "postprocess: {groups: [sex], methods: [fixed, youden, demographic_parity]}\n"
        "evaluate: {groups: [sex], n_boot: 50, n_perm: 99, intersect: false}\n"
        "weights: {schemes: [none]}\ntrain: {seeds: [0, 1]}\n")
    Path("predictions/none").mkdir(parents=True)
    for k in (0, 1):
        noisy = decisions.assign(score=(decisions["score"] + 0.01 * k).clip(0, 1))
        noisy[["row", "finding", "split", "score"]].to_parquet(f"predictions/none/seed{k}.parquet")
        monkeypatch.setattr("sys.argv", [
            "postprocess", "--predictions", f"predictions/none/seed{k}.parquet",
            "--index", "index.parquet", "--bias", "bias.parquet",
            "--out", f"decisions/none/seed{k}.parquet",
            "--thresholds", f"thresholds/none/seed{k}.json"])
        stages.run(stages.postprocess.main, "postprocess")
    written = pd.read_parquet("decisions/none/seed0.parquet")
    assert list(written.columns[:4]) == ["row", "finding", "split", "method"]
    assert list(json.loads(Path("thresholds/none/seed0.json").read_text())) == FINDINGS
    monkeypatch.setattr("sys.argv", [
        "evaluate", "--decisions", "decisions", "--index", "index.parquet", "--bias",
        "bias.parquet", "--headline", "fairness.json", "--grid", "grid.csv", "--seeds",
        "seeds.csv", "--groups", "groups.csv", "--thresholds", "thresholds"])
    stages.run(stages.evaluate.main, "evaluate")
    grid, groups = pd.read_csv("grid.csv"), pd.read_csv("groups.csv")
    assert grid.columns[0] == "finding" and groups.columns[0] == "finding"
    assert list(dict.fromkeys(grid["finding"])) == [*FINDINGS, ANY]
    assert len(grid) == 3 * (len(FINDINGS) + 1)  # three methods per finding
    assert grid.groupby("finding")["recommended"].sum().le(1).all()  # chosen per finding
    figures = json.loads(Path("fairness.json").read_text())
    assert figures["worst_finding"] in FINDINGS
    assert "sex.underdiagnosis_gap" in figures
    out = capsys.readouterr().out
    assert "p-values corrected together over 3 findings; worst finding" in out


def test_report_heatmap_verdict_per_finding_and_underdiagnosis():
    from biaslab.fairness.verdict import Criterion
    from biaslab.report import build_report
    from biaslab.report.findings import findings_report, heatmap_table

    evaluation = _evaluate(0, n_perm=2000)
    grid, per_group = evaluation.grid, evaluation.per_group
    values, marks = heatmap_table(grid, per_group, "equal_opportunity_difference", 0.05)
    assert list(values.index) == FINDINGS and list(values.columns) == ["sex=F", "sex=M"]
    assert marks.loc[GAPPED].all() and not marks.drop(index=GAPPED).to_numpy().any()
    # CheXclusion's disparity: women's TPR below the finding's overall TPR, men's above
    assert values.loc[GAPPED, "sex=F"] < -0.1 < 0.1 < values.loc[GAPPED, "sex=M"]
    criteria = [Criterion("equal_opportunity_difference", max=0.1, abs=True, alpha=0.05),
                Criterion("underdiagnosis_gap", max=0.5, abs=True)]
    report = findings_report(grid, per_group, criteria, unit="patients",
                             gap="equal_opportunity_difference", alpha=0.05)
    assert report.worst == GAPPED
    assert report.metric == {"overall": "failed", "worst_finding": GAPPED}
    verdict_rows = report.items[0].frame.set_index("finding")["verdict"]
    assert verdict_rows[GAPPED] == "failed"
    assert set(verdict_rows.drop(index=GAPPED)) <= {"passed", "not enough data"}
    assert "finding" not in report.grid.columns and len(report.grid) == 1
    rates_table = report.items[2].frame
    assert rates_table["underdiagnosis_rate"].str.match(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]").all()
    page = build_report(grid=report.grid, per_group=report.per_group, audit={},
                        prevalence=pd.DataFrame(columns=["split", "attribute", "group", "n",
                                                         "prevalence"]),
                        groups=["sex"], verdict=report.verdict, summary=report.summary,
                        findings=report.items)
    assert '<section id="findings">' in page and "Underdiagnosis" in page


def test_the_underdiagnosis_criterion_is_judged_on_the_any_finding_rows():
    from biaslab.fairness.verdict import Criterion
    from biaslab.report.findings import judge_findings

    evaluation = _evaluate(2)
    verdict, _ = judge_findings(evaluation.grid, evaluation.per_group,
                                [Criterion("underdiagnosis_gap", max=0.5, abs=True)],
                                unit="patients")
    status = verdict.set_index("finding")["status"]
    assert status[ANY] == "passed"
    assert (status.drop(index=ANY) == "not measured").all()


def test_reach_warning_says_when_no_gap_can_pass():
    assert reach_warning(40, 2000, "holm") == ""
    text = reach_warning(3240, 10000, "holm")
    assert "smallest adjusted p-value is 0.324" in text and "at least 64800" in text
    assert reach_warning(3240, 0, "holm") == ""  # no permutations: no p-values
