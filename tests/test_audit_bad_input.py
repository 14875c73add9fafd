"""`biaslab audit`: the bad predictions tables of issue 20 item 6 that the first checks let
through or said without the file, each one line naming the file, column or option, and what
was expected, before any work (tests/test_audit_command.py holds the first checks)."""

import numpy as np
import pytest

from biaslab.cli.main import main
from tests.test_audit_command import FAST, error, predictions

PATIENTS = ["--groups", "sex", "--split", "split", "--patient", "patient", "--id", "image"]


def test_logits_with_decisions_only_is_refused(tmp_path, capsys):
    table = predictions().assign(flagged=lambda t: (t["score"] > 0.5).astype(int))
    assert error(tmp_path, capsys, table, *PATIENTS, "--decision", "flagged", "--logits") == (
        "--logits says the score column holds logits, but --decision gives hard 0/1 decisions "
        "and no score: drop --logits")


def test_logits_that_look_like_probabilities_are_refused(tmp_path, capsys):
    err = error(tmp_path, capsys, predictions(), *PATIENTS, "--logits")
    assert err.startswith(f"{tmp_path / 'preds.csv'}: column 'score' (--score, --logits): "
                          "every value lies in [0, 1] (")
    assert err.endswith("they look like probabilities, which the logistic function would "
                        "squeeze into [0.5, 0.73]; drop --logits")
    # real logits (some negative) pass
    assert main(["audit", "--predictions", str(tmp_path / "preds.csv"), "--out",
                 str(tmp_path / "out"), *FAST, *PATIENTS, "--score", "logit", "--logits"]) == 0


def test_percentages_are_said_to_look_like_percentages(tmp_path, capsys):
    table = predictions()
    err = error(tmp_path, capsys, table.assign(score=table["score"] * 100), *PATIENTS)
    assert "outside [0, 1]; expected a probability" in err
    assert err.endswith("they look like percentages: divide them by 100)")


@pytest.mark.parametrize("label", [0, 1])
def test_test_images_of_one_class_are_refused(tmp_path, capsys, label):
    table = predictions()
    table = table[(table["split"] == "val") | (table["label"] == label)]
    assert error(tmp_path, capsys, table, *PATIENTS) == (
        f"{tmp_path / 'preds.csv'}: column 'label' (--label): every test image is {label}; the "
        "figures (rates, balanced accuracy, gaps) need test images of both classes")


def test_a_model_without_test_rows_is_named(tmp_path, capsys):
    table = predictions(models=("a", "b"))
    table = table[(table["model"] == "a") | (table["split"] == "val")]
    n_val = int(((table["model"] == "b")).sum())
    assert error(tmp_path, capsys, table, *PATIENTS, "--model", "model") == (
        f"{tmp_path / 'preds.csv'}: column 'model' (--model): model 'b' has no test row (its "
        f"{n_val} rows are val); every figure is computed on a model's test rows")


def test_seeds_without_a_model_column_are_refused(tmp_path, capsys):
    assert error(tmp_path, capsys, predictions(), *PATIENTS, "--seeds-of", "r=a,b") == (
        "--seeds-of r=...: no --model, the column naming the model of each row; the seeds are "
        "values of that column")


@pytest.mark.parametrize(("name", "content", "said"), [
    ("preds.csv", b"", "not a readable csv table (No columns to parse from file)"),
    ("preds.csv", b'a,b\n1,2\n"x', "not a readable csv table (Error tokenizing data."),
    ("preds.parquet", b"not parquet", "not a readable parquet table ("),
])
def test_a_file_that_is_no_table_is_named(tmp_path, capsys, name, content, said):
    (tmp_path / name).write_bytes(content)
    assert main(["audit", "--predictions", str(tmp_path / name), "--groups", "sex", "--out",
                 str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"biaslab audit: error: --predictions: {tmp_path / name}: {said}")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_an_infinite_logit_is_a_missing_score(tmp_path, capsys):
    table = predictions()
    table["logit"] = table["logit"].where(table.index != 3, np.inf)
    assert "column 'logit' (--score): row 4 (inf); expected a number in every row" in error(
        tmp_path, capsys, table, *PATIENTS, "--score", "logit", "--logits")
