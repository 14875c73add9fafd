"""What the units are called: patients only where the index has patient ids, images otherwise,
units where only some images have one; and the stage lines that say it (split, audit)."""

import numpy as np
import pandas as pd
import pytest

import stages
from biaslab.data.group_keys import images_text, patient_units, unit_word

SOME = ["p1", "p1", None, "p3", "p3", None, "p4", "p4"]  # 3 patients and 2 lone images


def _index(ids=None, n=8):
    """``n`` images, labels alternating; ``ids`` the patient ids (None: no such column)."""
    table = pd.DataFrame({"row": np.arange(n), "label": (np.arange(n) % 2).astype(np.int8)})
    return table if ids is None else table.assign(patient_id=pd.Series(ids, dtype="string"))


@pytest.mark.parametrize(("ids", "word", "units"), [
    (None, "images", 8),  # no patient_id column
    ([None] * 8, "images", 8),  # the digits: the column, no id
    (["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p5"], "patients", 5),
    (SOME, "units", 5),
])
def test_the_word_follows_the_units_the_split_and_bootstrap_use(ids, word, units):
    table = _index(ids)
    assert unit_word(table) == word
    assert patient_units(table).nunique() == units


def test_the_images_text_names_the_units_only_when_they_are_not_the_images():
    assert images_text(_index([None] * 8)) == "8 images"
    assert images_text(_index(["a", "a", "b", "b", "c", "c", "d", "d"])) == \
        "8 images of 4 patients"
    assert images_text(_index(SOME)) == \
        "8 images of 5 units (a patient, or an image without a patient id)"


# ------------------------------------------------------------------ the stage lines
def _run(stage, argv, tmp_path, monkeypatch, capsys, params=""):
    """``stage``'s main in this process (no interpreter to start): its stdout and stderr."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(params)
    monkeypatch.setattr("sys.argv", [stage, *argv])
    main = __import__(f"stages.{stage}", fromlist=["main"]).main
    stages.run(main, stage)
    out = capsys.readouterr()
    return out.out, out.err


def _split(table, tmp_path, monkeypatch, capsys):
    table[["row", "label", *(["patient_id"] if "patient_id" in table else [])]].to_parquet(
        tmp_path / "index.parquet")
    table[["row"]].to_parquet(tmp_path / "bias.parquet")
    return _run("split", ["--index", "index.parquet", "--bias", "bias.parquet",
                          "--out", "split.parquet"], tmp_path, monkeypatch, capsys,
                "split: {stratify: [label], train_size: 0}\n")  # not the digits task


def test_split_line_says_images_without_patient_ids(tmp_path, monkeypatch, capsys):
    out, err = _split(_index([None] * 40, n=40), tmp_path, monkeypatch, capsys)
    assert out.startswith("split: 40 images: {") and "(stratified on ['label'])" in out
    assert "patient" not in (out + err).lower()


def test_split_line_says_patients_with_patient_ids(tmp_path, monkeypatch, capsys):
    ids = [f"p{i // 2}" for i in range(40)]
    table = _index(ids, n=40).assign(label=[(i // 2) % 2 for i in range(40)])  # one per patient
    out, _ = _split(table, tmp_path, monkeypatch, capsys)
    assert out.startswith("split: 40 images of 20 patients, each patient's images in one part: {")


def _audit(table, tmp_path, monkeypatch, capsys):
    table.drop(columns="split").to_parquet(tmp_path / "index.parquet")
    table[["row"]].to_parquet(tmp_path / "bias.parquet")
    table[["row", "split"]].to_parquet(tmp_path / "split.parquet")
    (tmp_path / "rejected.csv").write_text("path,reason,table_row\n")
    return _run("audit", ["--index", "index.parquet", "--bias", "bias.parquet",
                          "--split", "split.parquet", "--rejected", "rejected.csv",
                          "--summary", "audit.json", "--tables", "audit"],
                tmp_path, monkeypatch, capsys, "audit: {attributes: []}\n")


@pytest.mark.parametrize(("ids", "said"), [
    ([None] * 8, "audit: 8 images, prevalence 0.500"),
    (["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p5"], "audit: 8 images of 5 patients, "),
    (SOME, "audit: 8 images of 5 units (a patient, or an image without a patient id), "),
])
def test_audit_line_names_the_units(ids, said, tmp_path, monkeypatch, capsys):
    table = _index(ids).assign(split=["train"] * 4 + ["val"] * 2 + ["test"] * 2)
    out, err = _audit(table, tmp_path, monkeypatch, capsys)
    assert out.startswith(said), out + err
    if ids == [None] * 8:
        assert "patient" not in (out + err).lower()
