"""`biaslab audit`: a user's predictions table in, the pipeline's grid, verdict and report out.

On tiny generated tables: a perfect scorer, a scorer biased against one group (the gap the
audit must find), decisions only, thresholds fitted on val rows or not at all, several seeds of
one recipe, the same figures as the pipeline's own postprocess and evaluate stages on the same
predictions, every bad input as one line before any work, and the console script end to end.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from biaslab.cli.main import main
from biaslab.fairness.thresholds import YoudenThreshold

SCRIPT = Path(sys.executable).parent / "biaslab"
FAST = ["--n-boot", "50", "--n-perm", "99"]


def predictions(n_patients=160, images=2, models=("m0",), bias=0.0, seed=0, perfect=False):
    """One row per (model, image): patients of sex F/M and three age groups, 40% of them val;
    the score separates the classes, and ``bias`` lowers every score of sex F (a logit)."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), images)
    n = len(patient)
    label = rng.integers(0, 2, n)
    sex = np.where(patient % 2 == 0, "F", "M")
    base = 2.5 * (2 * label - 1) + rng.normal(0, 1.2, n) - bias * (sex == "F")
    frames = []
    for k, model in enumerate(models):
        logit = base + np.random.default_rng(seed + 1 + k).normal(0, 0.4, n)
        frames.append(pd.DataFrame({
            "image": [f"img{i:04d}" for i in range(n)], "patient": [f"p{p}" for p in patient],
            "sex": sex, "age_group": np.array(["<40", "40-60", "60+"])[patient % 3],
            "split": np.where(patient < 0.4 * n_patients, "val", "test"), "label": label,
            "score": label.astype(float) if perfect else expit(logit), "logit": logit,
            "model": model}))
    return pd.concat(frames, ignore_index=True)


def audit(tmp_path, table, *options, name="preds.csv"):
    path = tmp_path / name
    table.to_csv(path, index=False)
    code = main(["audit", "--predictions", str(path), "--out", str(tmp_path / "out"),
                 *FAST, *options])
    return code


def grid(tmp_path):
    return pd.read_csv(tmp_path / "out" / "grid.csv").set_index("method")


def read_json(tmp_path, name):
    return json.loads((tmp_path / "out" / name).read_text())


PATIENTS = ["--groups", "sex,age_group", "--split", "split", "--patient", "patient",
            "--id", "image"]


# ------------------------------------------------------------------ what the audit finds

def test_a_perfect_scorer_passes_every_criterion(tmp_path):
    assert audit(tmp_path, predictions(perfect=True), *PATIENTS) == 0
    g = grid(tmp_path)
    assert (g["accuracy"] == 1.0).all() and (g["auc"] == 1.0).all()
    assert np.allclose(g["sex.equal_opportunity_difference"], 0.0)
    assert np.allclose(g["sex.excess_disparate_impact"], 1.0)  # only the labels' own disparity
    verdict = read_json(tmp_path, "verdict.json")
    assert verdict["verdict"] == "passed"
    assert verdict["flip_rate"]["status"] == "not measured"  # no injected bias to flip
    for name in ("grid.csv", "groups.csv", "seeds.csv", "fairness.json", "thresholds.json",
                 "report.html"):
        assert (tmp_path / "out" / name).is_file()


def test_a_biased_scorer_is_found_and_failed(tmp_path):
    fair, biased = tmp_path / "fair", tmp_path / "biased"
    fair.mkdir(), biased.mkdir()
    assert audit(fair, predictions(), *PATIENTS) == 0
    assert audit(biased, predictions(bias=2.5), *PATIENTS) == 0
    eod = "sex.equal_opportunity_difference"
    # F's positives fall under the one threshold: its TPR, not M's, drops
    assert grid(biased).loc["fixed", eod] < -0.2 < grid(fair).loc["fixed", eod]
    assert grid(biased).loc["fixed", f"{eod}_hi"] < -0.1  # the interval says so too
    assert grid(biased).loc["fixed", f"{eod}_p"] <= 0.05  # not chance (99 permutations)
    # a per-group threshold fitted on val repairs most of it
    assert abs(grid(biased).loc["equalized_odds", eod]) < abs(grid(biased).loc["fixed", eod])
    summary = pd.read_csv(biased / "out" / "grid.csv")
    assert not summary.loc[summary["method"] == "fixed", "recommended"].item()
    page = (biased / "out" / "report.html").read_text()
    assert "Can we trust this classifier?" in page and "No flip test" in page
    assert "Made by biaslab audit from" in page


def test_decisions_only_are_evaluated_as_given_and_no_threshold_is_fitted(tmp_path, capsys):
    table = predictions().assign(flag=lambda t: (t["score"] > 0.5).astype(int))
    assert audit(tmp_path, table.drop(columns="score"), *PATIENTS, "--decision", "flag") == 0
    g = grid(tmp_path)
    test = table[table["split"] == "test"]
    assert g.loc["given", "accuracy"] == pytest.approx((test["flag"] == test["label"]).mean())
    assert np.isnan(g.loc["given", "auc"])  # no score: no AUC
    assert g.loc["youden", "warning"].startswith("not applicable: only hard decisions")
    fitted = read_json(tmp_path, "thresholds.json")["model"]["model"]
    assert "not_applicable" in fitted["fixed"]
    assert "audit: warning: model/model: youden not applicable: only hard decisions" in (
        capsys.readouterr().err)


def test_thresholds_are_fitted_on_the_val_rows(tmp_path):
    table = predictions()
    assert audit(tmp_path, table, *PATIENTS) == 0
    val, test = table[table["split"] == "val"], table[table["split"] == "test"]
    youden = YoudenThreshold().fit(val["score"].to_numpy(), val["label"].to_numpy())
    assert read_json(tmp_path, "thresholds.json")["model"]["model"]["youden"] == (
        youden.params_())
    decided = youden.predict(test["score"].to_numpy())
    assert grid(tmp_path).loc["youden", "accuracy"] == pytest.approx(
        (decided == test["label"]).mean())
    assert grid(tmp_path)["recommended"].sum() == 1  # chosen on the val rows


def test_without_val_rows_only_fixed_applies_and_the_reason_is_recorded(tmp_path):
    table = predictions()
    assert audit(tmp_path, table[table["split"] == "test"], "--groups", "sex") == 0
    g = grid(tmp_path)
    assert g.loc["fixed", "n"] == (table["split"] == "test").sum()
    why = "not applicable: no validation rows: without --split every row is a test row"
    assert g.loc["youden", "warning"] == why
    assert not g["recommended"].any()  # nothing to choose on


def test_logits_are_turned_into_probabilities(tmp_path):
    table = predictions()
    assert audit(tmp_path, table.drop(columns="score"), *PATIENTS, "--score", "logit",
                 "--logits") == 0
    as_logits = grid(tmp_path)
    assert audit(tmp_path, table, *PATIENTS) == 0
    pd.testing.assert_frame_equal(as_logits, grid(tmp_path))


def test_seeds_of_one_recipe_are_combined_with_their_variance(tmp_path):
    table = predictions(models=("s0", "s1", "s2"))
    assert audit(tmp_path, table, *PATIENTS, "--model", "model",
                 "--seeds-of", "recipe=s0,s1,s2") == 0
    g = grid(tmp_path)
    assert set(pd.read_csv(tmp_path / "out" / "grid.csv")["scheme"]) == {"recipe"}
    assert (g["seeds"] == "s0 s1 s2").all()
    seeds = pd.read_csv(tmp_path / "out" / "seeds.csv")
    fixed = seeds[seeds["method"] == "fixed"]
    assert g.loc["fixed", "accuracy"] == pytest.approx(fixed["accuracy"].mean())
    assert g.loc["fixed", "accuracy_seed_sd"] == pytest.approx(fixed["accuracy"].std())
    # the recipe's interval is wider than one model's own
    own = fixed["accuracy_hi"] - fixed["accuracy_lo"]
    assert (g.loc["fixed", "accuracy_hi"] - g.loc["fixed", "accuracy_lo"]) > own.min()


def test_models_not_named_as_seeds_are_recipes_of_their_own(tmp_path):
    table = predictions(models=("baseline", "mitigated"))
    assert audit(tmp_path, table, *PATIENTS, "--model", "model") == 0
    schemes = pd.read_csv(tmp_path / "out" / "grid.csv")["scheme"]
    assert list(dict.fromkeys(schemes)) == ["baseline", "mitigated"]


def test_the_same_figures_as_the_pipelines_postprocess_and_evaluate(tmp_path, monkeypatch):
    """The pipeline's own stages on its files, and the audit on the table made of them."""
    import stages
    import stages.evaluate
    import stages.postprocess

    table = predictions(models=("0", "1", "2"), bias=1.0)
    table["row"] = table["image"].str[3:].astype(int)
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    monkeypatch.chdir(pipeline)
    first = table[table["model"] == "0"]
    first.rename(columns={"patient": "patient_id"})[
        ["row", "label", "patient_id", "sex", "age_group"]].to_parquet("index.parquet")
    first[["row"]].to_parquet("bias.parquet")
    Path("params.yaml").write_text(
        "postprocess: {groups: [sex]}\n"
        "evaluate: {groups: [sex, age_group], n_boot: 50, n_perm: 99}\n"
        "weights: {schemes: [none]}\ntrain: {seeds: [0, 1, 2]}\n")
    for k in ("0", "1", "2"):
        Path("predictions/none").mkdir(parents=True, exist_ok=True)
        table[table["model"] == k][["row", "split", "score"]].to_parquet(
            f"predictions/none/seed{k}.parquet")
        monkeypatch.setattr("sys.argv", [
            "postprocess", "--predictions", f"predictions/none/seed{k}.parquet",
            "--index", "index.parquet", "--bias", "bias.parquet",
            "--out", f"decisions/none/seed{k}.parquet",
            "--thresholds", f"thresholds/none/seed{k}.json"])
        stages.run(stages.postprocess.main, "postprocess")
    monkeypatch.setattr("sys.argv", [
        "evaluate", "--decisions", "decisions", "--index", "index.parquet", "--bias",
        "bias.parquet", "--headline", "fairness.json", "--grid", "grid.csv", "--seeds",
        "seeds.csv", "--groups", "groups.csv", "--thresholds", "thresholds"])
    stages.run(stages.evaluate.main, "evaluate")

    assert audit(tmp_path, table, "--groups", "sex,age_group", "--split", "split", "--patient",
                 "patient", "--id", "image", "--model", "model",
                 "--seeds-of", "none=0,1,2", "--params", "params.yaml") == 0
    ours, theirs = pd.read_csv(tmp_path / "out" / "grid.csv"), pd.read_csv("grid.csv")
    assert list(ours.columns) == list(theirs.columns)
    pd.testing.assert_frame_equal(ours.drop(columns="seeds"), theirs.drop(columns="seeds"))
    assert (ours["seeds"] == "0 1 2").all()
    ours, theirs = pd.read_csv(tmp_path / "out" / "groups.csv"), pd.read_csv("groups.csv")
    pd.testing.assert_frame_equal(ours, theirs)
    assert read_json(tmp_path, "fairness.json") == json.loads(Path("fairness.json").read_text())


# ------------------------------------------------------------------ bad input: one line first

def error(tmp_path, capsys, table, *options, name="preds.csv"):
    code = audit(tmp_path, table, *options, name=name)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing written: the checks come before any work
    return err.removeprefix("biaslab audit: error: ").strip()


@pytest.mark.parametrize(("change", "options", "said"), [
    (lambda t: t, ["--groups", "sexe"],
     "no column 'sexe' (--groups); did you mean 'sex'?; the table's columns are: image, "
     "patient, sex, age_group, split, label, score, logit"),
    (lambda t: t, ["--groups", "sex", "--label", "y"], "no column 'y' (--label)"),
    (lambda t: t.assign(score=t["score"].where(t.index != 4, 1.7)), ["--groups", "sex"],
     "column 'score' (--score): row 5 (1.7) outside [0, 1]; expected a probability"),
    (lambda t: t.assign(score=t["logit"]), ["--groups", "sex"],
     "negative values, they look like logits: add --logits"),
    (lambda t: t.assign(score=t["score"].where(t.index != 2)), ["--groups", "sex"],
     "column 'score' (--score): row 3 (empty); expected a number in every row"),
    (lambda t: t.assign(label=t["label"].where(t.index != 6, 2)), ["--groups", "sex"],
     "column 'label' (--label): row 7 (2); expected 0 or 1 in every row"),
    (lambda t: t.assign(sex=t["sex"].where(t.index != 0)), ["--groups", "sex"],
     "column 'sex': row 1 empty; every row needs a group (--groups)"),
    (lambda t: t.assign(split=t["split"].where(t.index != 3, "train")),
     ["--groups", "sex", "--split", "split"],
     "column 'split' (--split): row 4 ('train'); expected val or test"),
    (lambda t: t.assign(patient="same"), ["--groups", "sex", "--split", "split", "--patient",
                                          "patient"],
     "column 'patient' (--patient): 1 patient(s) in both val and test, e.g. 'same'"),
    (lambda t: t.assign(image="one"), ["--groups", "sex", "--id", "image"],
     "column 'image' (--id): image 'one' is listed more than once for model 'model'"),
    (lambda t: t.rename(columns={"sex": "split"}), ["--groups", "split"],
     "a group column may not be named 'split'"),
    (lambda t: t, [], "give --groups"),
])
def test_bad_input_is_one_line_naming_the_file_column_and_row(tmp_path, capsys, change,
                                                              options, said):
    table = change(predictions(models=("model",)).drop(columns="model"))
    err = error(tmp_path, capsys, table, *options)
    assert said in err
    assert err.startswith(f"{tmp_path / 'preds.csv'}: ") or said == "give --groups"


def test_several_models_need_ids_and_seeds_the_same_images(tmp_path, capsys):
    table = predictions(models=("s0", "s1"))
    assert "give --id" in error(tmp_path, capsys, table, "--groups", "sex", "--model", "model")
    short = table.drop(index=table.index[(table["model"] == "s1")][:3])
    err = error(tmp_path, capsys, short, "--groups", "sex", "--model", "model", "--id", "image",
                "--seeds-of", "r=s0,s1")
    assert "the seeds of 'r' were not run on the same images: 3 image(s) of 's0' are not in " \
           "'s1' (e.g. 'img0000')" in err
    assert "no model 's9' in column 'model'" in error(
        tmp_path, capsys, table, "--groups", "sex", "--model", "model", "--id", "image",
        "--seeds-of", "r=s0,s9")
    relabelled = table.assign(label=np.where(table["model"] == "s1", 1 - table["label"],
                                             table["label"]))
    assert "column 'label': image 'img0000' has ['0', '1'] in the rows of different models" in (
        error(tmp_path, capsys, relabelled, "--groups", "sex", "--model", "model", "--id",
              "image"))


def test_a_bad_setting_is_named_as_the_option(tmp_path, capsys):
    assert error(tmp_path, capsys, predictions(), "--groups", "sex", "--level", "2") == (
        "--level = 2.0 is not allowed; expected a confidence level in [0.5, 1)")


def test_parquet_is_read_and_a_missing_file_is_named(tmp_path, capsys):
    table = predictions()
    table.to_parquet(tmp_path / "p.parquet")
    assert main(["audit", "--predictions", str(tmp_path / "p.parquet"), "--groups", "sex",
                 "--out", str(tmp_path / "out"), *FAST]) == 0
    assert main(["audit", "--predictions", str(tmp_path / "none.csv"), "--groups", "sex",
                 "--out", str(tmp_path / "out2")]) == 1
    assert f"--predictions: {tmp_path / 'none.csv'} not found" in capsys.readouterr().err


# ------------------------------------------------------------------ the console script

def test_the_console_script_audits_a_csv(tmp_path):
    predictions(bias=2.0).to_csv(tmp_path / "preds.csv", index=False)
    proc = subprocess.run([str(SCRIPT), "audit", "--predictions", "preds.csv", "--groups",
                           "sex,age_group", "--split", "split", "--patient", "patient", "--id",
                           "image", "--out", "audit", *FAST], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("audit: 1 model(s) in 1 recipe(s); 4 (scheme, method) pairs")
    assert proc.stdout.rstrip().endswith(str(Path("audit") / "report.html"))
    assert "Traceback" not in proc.stderr
    verdict = json.loads((tmp_path / "audit" / "verdict.json").read_text())
    assert verdict["verdict"] in ("passed", "failed", "not enough data")
