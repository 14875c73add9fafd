"""biaslab.data.split: stratified, seeded, patient-grouped train/val/test split."""

import numpy as np
import pandas as pd
import pytest

from biaslab.data.split import SPLITS, stratified_split

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _strata_table(n=1000, seed=0):
    """n images, no patients, 2 labels x 2 s values with unequal strata."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "row": np.arange(n),
        "label": rng.integers(0, 2, n),
        "s": (rng.random(n) < 0.3).astype(int),
        "patient_id": pd.Series([None] * n, dtype="string"),
    })


def _patient_table(n_patients=300, seed=0):
    """Patients with 1 to 5 images each; label and s are per-patient, row ids shuffled."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_patients)
    patient = np.repeat([f"p{i:03d}" for i in range(n_patients)], sizes)
    label = np.repeat(rng.integers(0, 2, n_patients), sizes)
    s = np.repeat(rng.integers(0, 2, n_patients), sizes)
    n = len(patient)
    order = rng.permutation(n)  # a patient's images are not contiguous
    return pd.DataFrame({
        "row": np.arange(n),
        "label": label[order],
        "s": s[order],
        "patient_id": pd.Series(patient[order], dtype="string"),
    })


def test_every_row_assigned_exactly_once():
    table = _strata_table()
    out = stratified_split(table, FRACTIONS, ["label", "s"], seed=0)
    assert list(out.columns) == ["row", "split"]
    np.testing.assert_array_equal(out["row"], table["row"])  # same rows, same order
    assert out["split"].isin(SPLITS).all()
    assert out["row"].is_unique


@pytest.mark.parametrize(
    "fractions",
    [FRACTIONS, {"train": 0.8, "val": 0.1, "test": 0.1}, {"train": 0.5, "val": 0.25, "test": 0.25}],
)
def test_fractions_respected_in_every_stratum(fractions):
    table = _strata_table()
    out = table.assign(split=stratified_split(table, fractions, ["label", "s"], seed=0)["split"])
    for _, stratum in out.groupby(["label", "s"]):
        counts = stratum["split"].value_counts()
        for name in SPLITS:
            # largest-remainder rounding: within one unit of the exact share
            assert abs(counts.get(name, 0) - fractions[name] * len(stratum)) < 1


def test_exact_counts_on_equal_strata():
    n = 1000
    table = pd.DataFrame({
        "row": np.arange(n), "label": np.tile([0, 1], n // 2), "s": np.repeat([0, 1], n // 2),
    })
    out = table.assign(split=stratified_split(table, FRACTIONS, ["label", "s"], seed=0)["split"])
    counts = out.groupby(["label", "s", "split"]).size().unstack()
    assert (counts["train"] == 150).all()
    assert (counts["val"] == 50).all() and (counts["test"] == 50).all()


def test_deterministic_for_a_seed_and_different_for_another():
    table = _strata_table()
    a = stratified_split(table, FRACTIONS, ["label", "s"], seed=0)
    pd.testing.assert_frame_equal(a, stratified_split(table, FRACTIONS, ["label", "s"], seed=0))
    b = stratified_split(table, FRACTIONS, ["label", "s"], seed=1)
    assert (a["split"] != b["split"]).mean() > 0.2
    # same counts per split though: only the shuffle differs
    assert a["split"].value_counts().to_dict() == b["split"].value_counts().to_dict()


def test_does_not_depend_on_the_dataframe_index():
    table = _strata_table(200)
    reindexed = table.set_axis(np.arange(200) * 7 + 3)
    pd.testing.assert_frame_equal(
        stratified_split(table, FRACTIONS, ["label", "s"], seed=0),
        stratified_split(reindexed, FRACTIONS, ["label", "s"], seed=0),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_patient_in_two_splits(seed):
    table = _patient_table(seed=seed)
    out = table.assign(split=stratified_split(table, FRACTIONS, ["label", "s"], seed)["split"])
    per_patient = out.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    assert len(out) == len(table)
    # the patients (units) are split by the fractions, within one unit per stratum
    units = out.drop_duplicates("patient_id")
    for _, stratum in units.groupby(["label", "s"]):
        counts = stratum["split"].value_counts()
        for name in SPLITS:
            assert abs(counts.get(name, 0) - FRACTIONS[name] * len(stratum)) < 1


def test_unknown_patients_are_split_image_by_image():
    table = _patient_table(100)
    table.loc[table.index[:60], "patient_id"] = pd.NA
    out = table.assign(split=stratified_split(table, FRACTIONS, ["label"], seed=0)["split"])
    known = out[out["patient_id"].notna()]
    assert (known.groupby("patient_id")["split"].nunique() == 1).all()
    # images without a patient are units of their own: all three splits get some
    assert set(out.loc[out["patient_id"].isna(), "split"]) == set(SPLITS)


def test_stratum_of_a_patient_is_that_of_its_first_image():
    # patient a has a label-0 image first, then a label-1 image: the unit sits in stratum 0
    table = pd.DataFrame({
        "row": [0, 1, 2, 3, 4],
        "label": [0, 1, 1, 1, 0],
        "patient_id": pd.Series(["a", "a", "b", "c", "d"], dtype="string"),
    })
    out = stratified_split(table, FRACTIONS, ["label"], seed=0)
    assert out.loc[0, "split"] == out.loc[1, "split"]
    # strata are {a, d} (label 0) and {b, c} (label 1): size 2 -> one train, one val each
    by_row = dict(zip(out["row"], out["split"], strict=True))
    assert sorted([by_row[0], by_row[4]]) == ["train", "val"]
    assert sorted([by_row[2], by_row[3]]) == ["train", "val"]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_tiny_strata_do_not_crash(size):
    table = pd.DataFrame({
        "row": np.arange(size + 20),
        "label": np.r_[np.ones(size, int), np.zeros(20, int)],
    })
    out = stratified_split(table, FRACTIONS, ["label"], seed=0)
    tiny = out["split"][:size]
    assert tiny.isin(SPLITS).all()
    assert (tiny == "train").any()  # the largest fraction gets the first unit


def test_empty_stratify_splits_the_whole_table():
    table = _strata_table(100)
    out = stratified_split(table, FRACTIONS, [], seed=0)
    assert out["split"].value_counts().to_dict() == {"train": 60, "val": 20, "test": 20}


def test_missing_values_in_a_stratify_column_form_their_own_stratum():
    table = pd.DataFrame({"row": np.arange(10), "sex": ["F"] * 5 + [None] * 5})
    out = stratified_split(table, FRACTIONS, ["sex"], seed=0)
    assert out["split"].notna().all()
    assert (out["split"][5:] == "train").sum() == 3


def test_unknown_stratify_column_is_named():
    table = _strata_table(20)
    with pytest.raises(ValueError, match=r"split\.stratify: column\(s\) \['sex'\] not found; "
                                         r"available: \['row', 'label', 's', 'patient_id'\]"):
        stratified_split(table, FRACTIONS, ["label", "sex"], seed=0)


# ---------------------------------------------------------------- merging, source split, subsample
import warnings  # noqa: E402

from biaslab.data.split import UNUSED, SplitWarning, source_split, subsample_train  # noqa: E402
from tests.conftest import SHARED  # noqa: E402


def test_tiny_strata_are_merged_with_a_warning():
    # 40 s=0 units per label; 2 and 3 units of s=1: too few to cut 60/20/20 on their own
    table = pd.DataFrame({"row": np.arange(85),
                          "label": np.r_[np.zeros(40), np.ones(40), [0, 0, 1, 1, 1]].astype(int),
                          "s": np.r_[np.zeros(80), np.ones(5)].astype(int)})
    with pytest.warns(SplitWarning, match=r"strata smaller than split\.min_stratum = 5 merged "
                                          r"into their parent .*: label=0, s=1 \(2 units\); "
                                          r"label=1, s=1 \(3 units\); label=0 \(2 units\)"):
        out = stratified_split(table, FRACTIONS, ["label", "s"], seed=0, min_stratum=5)
    tiny = out["split"][80:]
    # label=0,s=1 (2) and label=1,s=1 (3) are still below 5 at depth [label], so they end up
    # together in one pool of 5 cut 3/1/1: every split gets one
    assert tiny.value_counts().to_dict() == {"train": 3, "val": 1, "test": 1}
    big = out["split"][:80].value_counts().to_dict()
    assert big == {"train": 48, "val": 16, "test": 16}  # large strata cut exactly


def test_no_warning_without_tiny_strata():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitWarning)
        stratified_split(_strata_table(), FRACTIONS, ["label", "s"], seed=0, min_stratum=5)


def test_source_split_is_kept_and_names_are_mapped():
    table = pd.DataFrame({"row": np.arange(6), "label": [0, 1] * 3,
                          "source_split": ["train", "Valid", "test", "training", "validation",
                                           "test"]})
    out = source_split(table)
    assert out["split"].tolist() == ["train", "val", "test", "train", "val", "test"]


@pytest.mark.parametrize(
    ("column", "patients", "message"),
    [(None, None, r"column\(s\) \['source_split'\] not found; available: \['row', 'label'\]; "
                  r"this source ships no split"),
     (["train", "val", "oops"], None, r"unknown split name\(s\) \['oops'\]"),
     (["train", "val", "val"], None, r"no \['test'\] rows"),
     (["train", "val", "test"], ["a", "a", "b"], r"patient\(s\) \['a'\] appear in two splits")],
)
def test_source_split_errors(column, patients, message):
    table = pd.DataFrame({"row": np.arange(3), "label": [0, 1, 0]})
    if column:
        table["source_split"] = column
    if patients:
        table["patient_id"] = pd.Series(patients, dtype="string")
    with pytest.raises(ValueError, match=r"split\.use_source: .*" + message):
        source_split(table)


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_training_subsample_composition(share):
    table = _patient_table(600).assign(sex=lambda d: np.where(d["row"] % 3 == 0, "F", "M"))
    split = stratified_split(table, FRACTIONS, ["label"], seed=0)["split"]
    new = subsample_train(table, split, size=300,
                          composition={"attribute": "sex", "value": "F", "share": share}, seed=0)
    train = table[new == "train"]
    assert len(train) == 300 and (train["sex"] == "F").sum() == round(share * 300)
    # val and test untouched, the rest of train marked unused
    assert (new[split != "train"] == split[split != "train"]).all()
    assert set(new[split == "train"]) <= {"train", UNUSED}
    # prevalence kept within one row per part
    assert abs(train["label"].mean() - table.loc[split == "train", "label"].mean()) < 0.02


def test_training_subsample_errors():
    table = _patient_table(50).assign(sex="M")
    split = stratified_split(table, FRACTIONS, ["label"], seed=0)["split"]
    with pytest.raises(ValueError, match=r"split\.train_size: 10 training rows with sex = F "
                                         r"wanted, only 0 available"):
        subsample_train(table, split, size=20, seed=0,
                        composition={"attribute": "sex", "value": "F", "share": 0.5})
    with pytest.raises(ValueError, match=r"split\.train_composition\.attribute: column\(s\) "
                                         r"\['race'\] not found"):
        subsample_train(table, split, size=20, seed=0,
                        composition={"attribute": "race", "value": "x", "share": 0.5})
    out = subsample_train(table, split, size=20, composition={}, seed=0)
    assert (out == "train").sum() == 20


# ---------------------------------------------------------------- what the parts must hold
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import yaml  # noqa: E402

from biaslab.data.split import missing_in_parts, parts_error  # noqa: E402
from tests.conftest import ROOT  # noqa: E402


def _few_positives(positives=3, negatives=20):
    return pd.DataFrame({"row": np.arange(negatives + positives),
                         "label": np.r_[np.zeros(negatives), np.ones(positives)].astype(np.int8)})


def test_a_part_without_positives_is_found_with_what_to_change():
    # 3 positives cut 60/20/20: 1.8, 0.6, 0.6 -> 2 train, 1 val (first of the tie), 0 test
    table = _few_positives()
    split = stratified_split(table, FRACTIONS, ["label"], seed=0)["split"]
    lacking = missing_in_parts(table, split, ["label"])
    assert lacking == [("test", "label", 1, 3)]
    assert parts_error(lacking, use_source=False, stratify=["label"]) == (
        "the test part has no image with label 1 (3 positives in all); use a larger "
        "split.fractions.test, a smaller split.min_stratum, or more data")
    bigger = {"train": 0.5, "val": 0.25, "test": 0.25}  # 1.5, 0.75, 0.75: one each
    split = stratified_split(table, bigger, ["label"], seed=0)["split"]
    assert missing_in_parts(table, split, ["label"]) == []


def test_val_and_test_need_every_group_train_both_labels():
    table = pd.DataFrame({"row": np.arange(8), "label": [0, 1, 0, 1, 0, 1, 0, 0],
                          "s": [0, 0, 1, 0, 0, 0, 0, 1],
                          "sex": pd.Series(["F", "M", "F", "M", None, "M", "F", "M"],
                                           dtype="string")})
    split = np.array(["train", "train", "train", "val", "val", "test", "test", UNUSED])
    lacking = missing_in_parts(table, split, ["label", "s", "sex", "age_group"])
    # train lacks no group (only the labels count there); a missing sex is no group; the
    # unused row (s = 1, M) belongs to no part; age_group is not in the table
    assert lacking == [("val", "s", 1, 2), ("val", "sex", "F", 3), ("test", "s", 1, 2)]
    assert parts_error(lacking, use_source=False, stratify=["label", "sex"]) == (
        "the val part has no image with s = 1 (2 in all) nor with sex = F (3 in all); the test "
        "part has no image with s = 1 (2 in all); use a larger split.fractions.val and "
        "split.fractions.test, a smaller split.min_stratum, or more data, and add s to "
        "split.stratify")
    split[[0, 1, 2]] = ["train", UNUSED, "train"]  # the subsample kept no positive
    assert missing_in_parts(table, split, [])[0] == ("train", "label", 1, 3)


def test_the_source_split_gets_its_own_advice():
    table = _few_positives(positives=2, negatives=4).assign(
        source_split=["train", "val", "test", "train", "val", "train"])
    split = source_split(table)["split"]
    lacking = missing_in_parts(table, split, [])
    assert lacking == [("test", "label", 1, 2)]
    assert parts_error(lacking, use_source=True, stratify=[]) == (
        "the source's test part has no image with label 1 (2 positives in all); move such images "
        "into the source's test split, or set split.use_source: false to split the data here")


def test_parts_error_names_three_lacks_per_part_then_counts():
    lacking = [("test", "digit", d, 1) for d in range(5)]
    assert parts_error(lacking, use_source=False, stratify=["digit"]).startswith(
        "the test part has no image with digit = 0 (1 in all) nor with digit = 1 (1 in all) nor "
        "with digit = 2 (1 in all) (and 2 more); use a larger split.fractions.test")


def _run_stage(tmp_path, table, split_params):
    table[["row", "label"]].to_parquet(tmp_path / "index.parquet")
    table.drop(columns="label").to_parquet(tmp_path / "bias.parquet")
    # every row kept: these tables are not the digits task (auto would subsample to 500)
    params = {"split": {"train_size": 0, **split_params}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "split.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "stages.split", "--index", str(tmp_path / "index.parquet"),
         "--bias", str(tmp_path / "bias.parquet"), "--out", str(out)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True)
    return proc, out


def test_stage_stops_before_writing_when_a_part_lacks_a_group(tmp_path):
    # 40 images, s = 1 on two of them: stratified on label only, s = 1 cannot reach val and test
    table = _strata_table(40).drop(columns="patient_id").assign(
        s=np.r_[np.zeros(38), np.ones(2)].astype(int))
    proc, out = _run_stage(tmp_path, table, {"stratify": ["label"]})
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.strip().splitlines()[-1].startswith("split: error: the ")
    assert "s = 1 (2 in all)" in proc.stderr and "add s to split.stratify" in proc.stderr
    proc, out = _run_stage(tmp_path, table.assign(s=np.arange(40) % 2), {"stratify": ["label"]})
    assert proc.returncode == 0, proc.stderr
    assert set(pd.read_parquet(out)["split"]) == set(SPLITS)


def test_stage_checks_the_source_split_too(tmp_path):
    table = _few_positives(positives=2, negatives=4).assign(
        source_split=["train", "val", "test", "train", "val", "train"])
    proc, out = _run_stage(tmp_path, table, {"use_source": True})
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.strip() == (
        "split: note: no injected bias s (bias.kind: none): not stratified on it\n"
        "split: error: the source's test part has no image with label 1 (2 positives in all); "
        "move such images into the source's test split, or set split.use_source: false to "
        "split the data here")


NIH_TABLE = SHARED / "data" / "nih_metadata" / "Data_Entry_2017_v2020.csv.gz"


@pytest.mark.skipif(not NIH_TABLE.exists(), reason=f"real NIH table not available at {NIH_TABLE}")
def test_no_patient_in_two_splits_on_the_real_nih_table():
    from biaslab.data.sources.nih import nih_index, read_nih_table

    index, _ = nih_index(read_nih_table(NIH_TABLE), finding="any", views=[], age_bins=[40, 60, 80])
    index.insert(0, "row", np.arange(len(index)))
    out = stratified_split(index, FRACTIONS, ["label", "sex", "age_group"], seed=0, min_stratum=5)
    table = index.assign(split=out["split"].to_numpy())
    assert (table.groupby("patient_id")["split"].nunique() == 1).all()
    shares = table["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.6, abs=0.01)


def test_train_size_auto_is_the_digits_task_subsample_and_every_row_elsewhere():
    from biaslab.config import SOURCES, SplitConfig
    from biaslab.data.split import DIGITS_TRAIN_SIZE, train_rows

    assert train_rows("auto", "digits") == DIGITS_TRAIN_SIZE == 500
    assert {source: train_rows("auto", source) for source in SOURCES if source != "digits"} \
        == {source: 0 for source in SOURCES if source != "digits"}
    assert train_rows(120, "csv") == 120 and train_rows(0, "digits") == 0
    composition = {"attribute": "sex", "value": "F", "share": 0.5}
    assert train_rows("auto", "digits", composition=composition) == 500
    with pytest.raises(ValueError, match=r"^split\.train_composition needs a split\.train_size "
                                         r"> 0 \(train_size auto keeps every training row of "
                                         r"the csv source\)"):
        train_rows("auto", "csv", composition=composition)
    # the reference's words follow the number
    assert f"digits task's {DIGITS_TRAIN_SIZE} on the digits source" in \
        SplitConfig.model_fields["train_size"].description
