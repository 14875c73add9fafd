"""The report: verdict first, text that fits the run, escaped values, figures from the
predictions and decisions, the explain section only when there is one, both file layouts."""

import html
import json
import re

import numpy as np
import pandas as pd
import pytest

from biaslab.data.group_keys import unit_word
from biaslab.fairness.verdict import Criterion, judge, model_warnings, summarise
from biaslab.report import (
    ExplainFigure,
    ExplainTable,
    build_report,
    data,
    figures,
    inputs,
    missing_figures,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _grid(**extra):
    base = {"scheme": ["none", "none"], "method": ["fixed", "equalized_odds"],
            "balanced_accuracy": [0.9, np.nan], "s.groups": ["s=0:4;s=1:3"] * 2,
            "s.disparate_impact": [0.5, np.nan], "flip_rate": [0.2, np.nan],
            "recommended": [True, False], "degenerate": [False, False]}
    return pd.DataFrame({**base, **extra})


def _per_group(patients=(4, 3)):
    """Test groups s=0 (4 images) and s=1 (3 images) of ``patients`` units each."""
    return pd.DataFrame({"scheme": ["none"] * 3, "method": ["fixed"] * 3, "set": ["test"] * 3,
                         "attribute": ["s", "s", "all"], "group": ["s=0", "s=1", "all"],
                         "n": [4, 3, 7], "patients": [*patients, sum(patients)],
                         "positives": [1, 2, 3], "negatives": [3, 1, 4]})


def _page(grid=None, per_group=None, **kwargs):
    grid = _grid() if grid is None else grid
    prevalence = pd.DataFrame({"split": ["all"], "attribute": ["s"], "group": ["0"], "n": [4],
                               "prevalence": [0.25]})
    return build_report(grid=grid, per_group=_per_group() if per_group is None else per_group,
                        prevalence=prevalence,
                        audit={"n": 4, "prevalence": 0.25, "splits": {}, "warnings": []},
                        groups=["s"], **kwargs)


def _verdict(grid, per_group=None, unit="patients"):
    per_group = _per_group() if per_group is None else per_group
    verdict = judge(grid, per_group, [Criterion("disparate_impact", min=0.8, max=1.25),
                                      Criterion("flip_rate", max=0.05)], unit=unit)
    return {"verdict": verdict, "summary": summarise(verdict, grid),
            "warnings": model_warnings(grid, per_group, min_group_size=30,
                                       min_class_size=10, unit=unit)}


def _text(page: str) -> str:
    """What a reader sees of the page: no style, script, tags or data URIs; entities decoded;
    one space between words."""
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _index(patient_ids):
    """An index of 7 images with these patient ids (None: unknown)."""
    return pd.DataFrame({"row": range(7), "label": [0, 1] * 3 + [0],
                         "patient_id": pd.Series(patient_ids, dtype="string")})


def _page_for(index, per_group, **kwargs):
    """The page of a run on ``index``: its words chosen from the index, as the stage does."""
    unit = unit_word(index)
    return _text(_page(per_group=per_group, **_verdict(_grid(), per_group, unit), unit=unit,
                       **kwargs))


def test_a_reason_shared_by_every_model_is_said_once():
    grid = _grid(**{"s.insufficient": ["tpr: 4 positives", "tpr: 4 positives"]})
    assert missing_figures(grid) == ["every model: s.insufficient: tpr: 4 positives"]
    grid = _grid(**{"s.insufficient": ["tpr: 4 positives", np.nan]})
    assert missing_figures(grid) == ["none / fixed: s.insufficient: tpr: 4 positives"]


def test_the_verdict_comes_first_with_its_numbers_and_group_sizes():
    page = _page(**_verdict(_grid()), unit="patients")
    assert page.index('id="verdict"') < page.index('id="figures"')
    assert "none / fixed: failed" in page
    assert "s=0: 4 patients, 1 positives, 3 negatives; s=1: 3 patients" in page
    assert "small group" in page and "test group s=0 has only 4 patients" in page
    # next to the gaps of the headline table: the sizes of the groups they compare
    assert "gaps between the groups of s: s=0: 4 patients" in page


def test_without_patient_ids_the_page_speaks_of_images_never_of_patients():
    text = _page_for(_index([None] * 7), _per_group(patients=(4, 3)))
    assert "patient" not in text.lower()
    assert "s=0: 4 images, 1 positives, 3 negatives; s=1: 3 images, 2 positives" in text
    assert "test group s=0 has only 4 images, 1 positives" in text
    assert "gaps between the groups of s: s=0: 4 images" in text
    assert "resampling images within each group" in text
    # the groups table has no column repeating n under another name
    assert " n positives negatives " in text


def test_with_patient_ids_the_page_speaks_of_patients():
    index = _index(["p1", "p1", "p2", "p3", "p4", "p4", "p5"])
    text = _page_for(index, _per_group(patients=(3, 2)))
    assert "s=0: 4 images of 3 patients, 1 positives, 3 negatives; s=1: 3 images of 2 patients" \
        in text
    assert "test group s=0 has only 3 patients, 1 positives" in text
    assert "resampling whole patients (each with all its images) within each group" in text
    assert " n patients positives " in text
    # evaluate.resample: image draws images, whatever the units
    assert "resampling images within each group" in _page_for(index, _per_group(patients=(3, 2)),
                                                              resample="image")


def test_with_some_patient_ids_the_page_says_what_a_unit_is():
    text = _page_for(_index(["p1", "p1", None, "p3", None, "p4", "p4"]), _per_group((3, 2)))
    assert "s=0: 4 images of 3 units, 1 positives" in text
    assert "resampling units (a patient with all its images, or an image without a patient " \
           "id) within each group" in text
    assert " n units positives " in text


def test_without_criteria_the_page_says_there_is_no_verdict():
    assert "No verdict" in _page()


def test_values_of_the_run_reach_the_page_escaped():
    grid = _grid(warning=["", "not applicable: group s=0 has one class <validation>"],
                 **{"s.insufficient": ["<b>tpr</b>: 4 positives"] * 2})
    page = _page(grid, **_verdict(grid))
    assert "not applicable: group s=0 has one class &lt;validation&gt;" in page
    assert "&lt;b&gt;tpr&lt;/b&gt;" in page and "<b>tpr</b>" not in page


def test_the_text_speaks_of_an_injected_bias_only_when_there_is_one():
    with_bias = _page(bias="noise_channel")
    assert "flip rate</b>" in with_bias and "shifted</b>" in with_bias
    grid = _grid().drop(columns="flip_rate")
    without = _page(grid, bias="none")
    assert "flip rate" not in without and "shifted" not in without and "S=1" not in without
    assert "no injected bias" in without


def test_the_sweep_is_linked_when_there_is_one():
    assert 'href="sweep.png"' in _page(sweep="sweep.png")
    page = _page()
    assert "href=" not in page.split('id="sweep"')[1] and "reports/sweep.png" in page


def test_the_explain_section_is_there_only_with_something_to_show():
    assert 'id="explain"' not in _page()
    share = pd.DataFrame({"group": ["s=0", "s=1"], "attribution_share": [0.1, 0.6],
                          "flip_rate": [0.2, 0.2]})
    page = _page(explain=[ExplainFigure("Occlusion <none>", PNG + b"x", "the patch lights up"),
                          ExplainTable("Share of attribution", share)])
    assert 'id="explain"' in page and "Occlusion &lt;none&gt;" in page
    assert "the patch lights up" in page and "attribution_share" in page and "0.600" in page
    with pytest.raises(TypeError, match="ExplainFigure or ExplainTable"):
        _page(explain=["a figure"])


# ------------------------------------------------------------------ figures and their data

def _rows():
    return pd.DataFrame({"row": np.arange(8), "label": [0, 1] * 4, "s": [0, 0, 0, 0, 1, 1, 1, 1]})


def _predictions():
    scores = [0.1, 0.8, 0.3, 0.6, 0.4, 0.9, 0.2, 0.7]
    return pd.DataFrame({"row": np.arange(8), "split": ["test"] * 8, "score": scores})


def _decisions():
    d = [0, 1, 0, 1, 1, 1, 0, 0]
    frame = _predictions().assign(method="fixed", decision=d)
    return pd.concat([frame, frame.assign(method="youden", decision=1)], ignore_index=True)


def test_decision_counts_per_group_and_method():
    counts = data.decision_counts({"none": _decisions()}, _rows(), ["s"])
    fixed = counts[counts["method"] == "fixed"].set_index("group")
    # s=0: labels 0 1 0 1, decisions 0 1 0 1; s=1: labels 0 1 0 1, decisions 1 1 0 0
    assert fixed.loc["s=0", ["tp", "fp", "tn", "fn"]].tolist() == [2, 0, 2, 0]
    assert fixed.loc["s=1", ["tp", "fp", "tn", "fn"]].tolist() == [1, 1, 1, 1]
    assert fixed.loc["s=1", ["tpr", "fpr"]].tolist() == [0.5, 0.5]
    youden = counts[counts["method"] == "youden"]
    assert youden["fpr"].tolist() == [1.0, 1.0] and youden["tn"].sum() == 0


def test_the_figures_show_one_seed_the_first():
    seeded = pd.concat([_predictions().assign(seed=1, score=0.0),
                        _predictions().assign(seed=0)], ignore_index=True)
    scores = data.test_scores({"none": seeded}, _rows(), ["s"])
    assert len(scores) == 8 and scores["score"].max() == 0.9
    assert scores["s"].tolist()[::4] == ["s=0", "s=1"]


@pytest.mark.slow  # matplotlib draws several figures: seconds
def test_the_figures_are_pngs_and_a_one_class_group_draws_no_curve():
    rows = _rows().assign(label=[0, 1, 0, 1, 1, 1, 1, 1])  # s=1: positives only
    scores = data.test_scores({"none": _predictions()}, rows, ["s"])
    counts = data.decision_counts({"none": _decisions()}, rows, ["s"])
    grid = _grid(**{"s.disparate_impact_lo": [0.3, np.nan], "s.disparate_impact_hi": [0.7, 1],
                    "pareto": [True, False], "val.balanced_accuracy": [0.9, 0.8],
                    "val.fairness_cost": [0.6, 0.1]})
    curves = pd.DataFrame({"scheme": "none", "epoch": [1, 2], "train_loss": [0.7, 0.5],
                           "val_loss": [0.7, 0.6], "val_bacc": [0.5, 0.6]})
    drawn = [figures.roc_figure(scores, counts, "s"), figures.calibration_figure(scores, "s"),
             figures.confusion_figure(counts, "s"),
             figures.tradeoff_figure(grid, "s.disparate_impact"), figures.curves_figure(curves)]
    assert all(png.startswith(PNG) for png in drawn)
    assert figures.tradeoff_figure(grid, "s.auc_gap") is None  # no such gap: no figure


@pytest.mark.slow  # matplotlib draws several figures: seconds
def test_the_page_holds_every_figure_as_an_inline_image():
    scores = data.test_scores({"none": _predictions()}, _rows(), ["s"])
    counts = data.decision_counts({"none": _decisions()}, _rows(), ["s"])
    page = _page(scores=scores, counts=counts, gap="s.disparate_impact",
                 curves=pd.DataFrame({"scheme": "none", "epoch": [1], "train_loss": [0.5],
                                      "val_loss": [0.6], "val_acc": [0.7]}))
    # trade-off, ROC, calibration, the recommended pair's confusion matrices, curves
    assert page.count('src="data:image/png;base64,') == 5
    assert "<th>TP</th>" in page  # every pair's counts, as a table
    assert "<img" not in page.replace('<img src="data:image/png;base64,', "")


# ------------------------------------------------------------------ reading the folders

def test_each_scheme_and_seed_is_read(tmp_path):
    for scheme in ("none", "reweighing"):
        for seed in (0, 1, 2):
            path = tmp_path / "pred" / scheme / f"seed{seed}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            _predictions().to_parquet(path)
            curve = tmp_path / "train" / scheme / f"seed{seed}" / "curves.csv"
            curve.parent.mkdir(parents=True)
            pd.DataFrame({"epoch": [1, 2], "val_loss": [0.5, 0.4]}).to_csv(curve, index=False)
    # seed 2 was dropped from train.seeds: its files stay on disk, unread
    tables = inputs.per_scheme(tmp_path / "pred", ["none", "reweighing"], [0, 1])
    assert list(tables) == ["none", "reweighing"]
    assert len(tables["none"]) == 16 and set(tables["none"]["seed"]) == {0, 1}
    curves = inputs.curves(tmp_path / "train", ["none", "reweighing"], [0, 1])
    assert len(curves) == 8 and set(curves["scheme"]) == {"none", "reweighing"}
    assert set(curves["seed"]) == {0, 1}


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="seed3.parquet: missing"):
        inputs.per_scheme(tmp_path, ["none"], [3])
    with pytest.raises(FileNotFoundError, match="seed0/curves.csv: missing"):
        inputs.curves(tmp_path, ["none"], [0])
    # the layout before training seeds is not read: a stale file cannot stand in for a seed
    (tmp_path / "none.parquet").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="seed0.parquet: missing"):
        inputs.per_scheme(tmp_path, ["none"], [0])


def test_the_explain_folder_is_read_from_its_manifests(tmp_path):
    assert inputs.explain(None) == [] and inputs.explain(tmp_path / "nothing") == []
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "occlusion.png").write_bytes(PNG)
    pd.DataFrame({"group": ["s=0"], "share": [0.25]}).to_csv(tmp_path / "share.csv", index=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"items": [
        {"kind": "table", "title": "Attribution share", "file": "share.csv"}]}))
    (tmp_path / "none" / "manifest.json").write_text(json.dumps({"items": [
        {"kind": "figure", "title": "Occlusion", "caption": "where it looks",
         "file": "occlusion.png"}]}))
    items = inputs.explain(tmp_path, ["none", "reweighing"])
    assert [type(i).__name__ for i in items] == ["ExplainTable", "ExplainFigure"]
    assert items[1].title == "none: Occlusion" and items[1].png == PNG
    assert items[0].frame["share"].tolist() == [0.25]
    (tmp_path / "manifest.json").write_text(json.dumps({"items": [
        {"kind": "figure", "file": "gone.png"}]}))
    with pytest.raises(FileNotFoundError, match="gone.png: missing"):
        inputs.explain(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"items": [{"kind": "video"}]}))
    with pytest.raises(ValueError, match=r"items\[0\].*expected a mapping with kind"):
        inputs.explain(tmp_path)


def test_the_page_says_why_the_pair_beat_the_baseline_and_warns_of_the_raw_di():
    grid = _grid(**{"recommended": [False, True], "balanced_accuracy": [0.9, 0.88],
                    "val.balanced_accuracy": [0.90, 0.89], "val.fairness_cost": [0.30, 0.05],
                    "pareto": [True, True], "dominated_by": ["", ""],
                    "s.base_disparate_impact": [0.5, 0.5],
                    "s.base_disparate_impact_lo": [0.4, 0.4],
                    "s.base_disparate_impact_hi": [0.6, 0.6]})
    checks = _verdict(grid)
    checks["warnings"] = model_warnings(grid, _per_group(), min_group_size=1, min_class_size=1,
                                        gap="s.disparate_impact")
    text = _text(_page(grid, gap="s.disparate_impact", max_accuracy_loss=0.02, **checks))
    assert ("none/equalized_odds is recommended over the baseline none/fixed: on validation it "
            "has balanced accuracy 0.890 and fairness cost |log s.disparate_impact| 0.050, the "
            "baseline 0.900 and 0.300; it costs less for 0.010 less balanced accuracy, within "
            "evaluate.max_accuracy_loss = 0.02.") in text
    assert ("fairness cost (every model): evaluate.pareto_gap = disparate_impact compares "
            "selection rates, and the groups of s differ in base rate: s.base_disparate_impact "
            "= 0.5 [0.4, 0.6] on test excludes parity (1)") in text
    # without the loss (an older caller) no sentence; an error-rate gap: no warning
    assert "is recommended over the baseline" not in _text(_page(grid, gap="s.disparate_impact"))
    assert model_warnings(grid, _per_group(), min_group_size=1, min_class_size=1,
                          gap="s.equalized_odds_difference").empty


def test_the_rank_test_section_answers_whether_a_method_beats_plain_training():
    from biaslab.fairness.ranks import rank_methods

    rng = np.random.default_rng(0)
    base = rng.uniform(0.7, 0.8, 8)
    seeds = pd.DataFrame([{"scheme": scheme, "method": "fixed", "seed": seed,
                           "balanced_accuracy": base[seed] + bump}
                          for scheme, bump in (("none", 0.0), ("reweighing", 0.05))
                          for seed in range(8)])
    page = _text(_page(ranks=rank_methods(seeds, "balanced_accuracy", blocks=["seed"])))
    assert "Does any method beat plain training?" in page
    assert ("1 method(s) beat none/fixed: the strongest evidence is reweighing/fixed (mean "
            "difference +0.050, Holm-adjusted Wilcoxon p = 0.00781)") in page
    assert "Iman-Davenport p < 1e-15" in page  # every seed ranks them alike
    assert "critical-difference diagram" in _page(ranks=rank_methods(
        seeds, "balanced_accuracy", blocks=["seed"]))
    one_seed = _text(_page(ranks="needs at least 2 methods and 2 blocks"))
    assert "No rank test: needs at least 2 methods and 2 blocks." in one_seed
    assert "Does any method beat" not in _text(_page())
