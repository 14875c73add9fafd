"""biaslab.data.audit: counts and label prevalence per split and group, Wilson intervals,
warnings."""

import numpy as np
import pandas as pd
import pytest

from biaslab.data.audit import audit_summary, prevalence_table, wilson


@pytest.fixture
def table():
    """10 images by hand.

    row    0 1 2 3 4 5 6 7 8 9
    split  t t t t t t v v e e   (t=train, v=val, e=test)
    label  1 1 0 0 0 1 1 0 1 0
    s      1 1 0 0 1 0 1 0 1 1
    """
    return pd.DataFrame({
        "row": np.arange(10),
        "split": ["train"] * 6 + ["val"] * 2 + ["test"] * 2,
        "label": [1, 1, 0, 0, 0, 1, 1, 0, 1, 0],
        "s": [1, 1, 0, 0, 1, 0, 1, 0, 1, 1],
    })


def _get(prev, split, attribute, group):
    hit = prev[(prev["split"] == split) & (prev["attribute"] == attribute)
               & (prev["group"] == group)]
    assert len(hit) == 1, (split, attribute, group)
    return hit.iloc[0]


def test_prevalence_table_columns_and_order(table):
    prev = prevalence_table(table, ["s"])
    assert prev.columns.tolist() == ["split", "attribute", "group", "n", "positives",
                                     "prevalence", "prevalence_lo", "prevalence_hi", "share"]
    # all first, then the splits in sorted order; per split: all, then each attribute
    assert prev["split"].unique().tolist() == ["all", "test", "train", "val"]
    assert prev.query("split == 'all'")["group"].tolist() == ["all", "0", "1"]


@pytest.mark.parametrize(
    ("split", "attribute", "group", "n", "positives", "share"),
    [
        ("all", "all", "all", 10, 5, 1.0),
        ("all", "s", "0", 4, 1, 0.4),
        ("all", "s", "1", 6, 4, 0.6),
        ("train", "all", "all", 6, 3, 1.0),
        ("train", "s", "0", 3, 1, 0.5),
        ("train", "s", "1", 3, 2, 0.5),
        ("val", "s", "0", 1, 0, 0.5),
        ("val", "s", "1", 1, 1, 0.5),
        ("test", "all", "all", 2, 1, 1.0),
        ("test", "s", "1", 2, 1, 1.0),
    ],
)
def test_prevalence_table_numbers_by_hand(table, split, attribute, group, n, positives, share):
    row = _get(prevalence_table(table, ["s"]), split, attribute, group)
    assert row["n"] == n and row["positives"] == positives
    assert row["prevalence"] == pytest.approx(positives / n)
    assert row["share"] == pytest.approx(share)
    assert row["prevalence_lo"] <= row["prevalence"] <= row["prevalence_hi"]


def test_absent_group_has_no_row_in_that_split(table):
    prev = prevalence_table(table, ["s"])
    assert _get(prev, "test", "s", "1")["n"] == 2
    assert prev.query("split == 'test' and attribute == 's' and group == '0'").empty


def test_shares_sum_to_one_per_split_and_attribute(table):
    prev = prevalence_table(table.assign(sex=list("FFMMFMFMFM")), ["s", "sex"])
    sums = prev.groupby(["split", "attribute"])["share"].sum()
    np.testing.assert_allclose(sums, 1.0)
    counts = prev.groupby(["split", "attribute"])["n"].sum().unstack()
    assert (counts["s"] == counts["all"]).all() and (counts["sex"] == counts["all"]).all()


def test_several_attributes_and_string_groups(table):
    prev = prevalence_table(table.assign(sex=list("FFMMFMFMFM")), ["s", "sex"])
    f = _get(prev, "all", "sex", "F")
    assert f["n"] == 5 and f["positives"] == 4  # rows 0, 1, 4, 6, 8
    m = _get(prev, "train", "sex", "M")
    assert m["n"] == 3 and m["positives"] == 1  # rows 2, 3, 5


def test_wilson_known_value():
    lo, hi = wilson(5, 10)
    assert float(lo) == pytest.approx(0.2366, abs=5e-4)
    assert float(hi) == pytest.approx(0.7634, abs=5e-4)


def test_wilson_known_value_other_level():
    # k=0, n=20 at 95%: [0, z^2 / (n + z^2)] = [0, 0.1611]
    lo, hi = wilson(0, 20)
    assert float(lo) == pytest.approx(0.0, abs=1e-12)
    assert float(hi) == pytest.approx(1.959964**2 / (20 + 1.959964**2), rel=1e-6)
    lo90, hi90 = wilson(0, 20, level=0.9)
    assert hi90 < hi


@pytest.mark.parametrize("n", [1, 7, 50, 1000])
def test_wilson_contains_p_and_stays_in_unit_interval(n):
    k = np.arange(n + 1)
    lo, hi = wilson(k, np.full(n + 1, n))
    p = k / n
    assert (lo <= p + 1e-12).all() and (p <= hi + 1e-12).all()
    assert (lo >= -1e-12).all() and (hi <= 1 + 1e-12).all()


def test_wilson_shrinks_with_n():
    widths = [np.subtract(*wilson(n // 2, n)[::-1]) for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2]


def test_wilson_empty_is_nan():
    lo, hi = wilson(np.array([0]), np.array([0]))
    assert np.isnan(lo).all() and np.isnan(hi).all()


def test_audit_summary(table):
    summary = audit_summary(prevalence_table(table, ["s"]), min_group_size=2)
    assert summary["n"] == 10 and summary["prevalence"] == 0.5
    assert summary["splits"] == {"test": 2, "train": 6, "val": 2}
    assert summary["groups"] == {"s": {"0": {"n": 4, "prevalence": 0.25},
                                       "1": {"n": 6, "prevalence": 0.6667}}}
    # groups with fewer than 2 rows in a split: s=0 in test (none at all), s=0 and s=1 in val
    assert summary["warnings"] == [
        "s=0 has 0 rows in split test (fewer than 2): its metrics will be unreliable",
        "s=0 has 1 rows in split val (fewer than 2): its metrics will be unreliable",
        "s=1 has 1 rows in split val (fewer than 2): its metrics will be unreliable",
    ]


def test_audit_summary_warns_about_a_group_absent_from_a_split(table):
    """s=0 has no test row: the smallest group of all must not go unnoticed."""
    summary = audit_summary(prevalence_table(table, ["s"]), min_group_size=1)
    assert summary["warnings"] == [
        "s=0 has 0 rows in split test (fewer than 1): its metrics will be unreliable"
    ]


def test_audit_summary_no_warnings_when_groups_are_large(table):
    table = table.assign(s=[1, 1, 0, 0, 1, 0, 1, 0, 1, 0])  # both groups in every split
    assert audit_summary(prevalence_table(table, ["s"]), min_group_size=1)["warnings"] == []


def test_audit_summary_without_attributes(table):
    summary = audit_summary(prevalence_table(table, []), min_group_size=30)
    assert summary["groups"] == {} and summary["warnings"] == []
    assert summary["n"] == 10


def test_audit_summary_warns_about_every_small_group(table):
    summary = audit_summary(prevalence_table(table, ["s"]), min_group_size=30)
    # every (split, group) of attribute s is below 30: 2 groups x (all, test, train, val)
    assert len(summary["warnings"]) == 2 * 4
    assert all("fewer than 30" in w for w in summary["warnings"])


# ---------------------------------------------------------------- univariate, balance, Simpson
from biaslab.data.audit import (  # noqa: E402
    balance_table,
    run_audit,
    simpson_table,
    univariate_table,
    with_intersections,
)
from tests.conftest import SHARED  # noqa: E402


def test_univariate_counts_shares_and_imbalance(table):
    uni = univariate_table(table.assign(sex=list("FFFFFFFFMM")), ["label", "sex"])
    assert uni.values.tolist() == [
        ["label", "0", 5, 0.5, 1.0], ["label", "1", 5, 0.5, 1.0],
        ["sex", "F", 8, 0.8, 4.0], ["sex", "M", 2, 0.2, 4.0]]


def test_intersections_are_joint_groups(table):
    crossed, names = with_intersections(table.assign(sex=list("FFMMFMFMFM")), ["s", "sex"])
    assert names == ["s&sex"]
    prev = prevalence_table(crossed, ["s", "sex", *names])
    row = _get(prev, "all", "s&sex", "1&F")  # rows 0, 1, 4, 6, 8: labels 1 1 0 1 1
    assert row["n"] == 5 and row["positives"] == 4


def test_missing_values_are_one_group_spelt_the_same_in_every_table(table):
    t = table.assign(sex=pd.Series(["F", None, "M", None, "F", "M", np.nan, "M", "F", "M"],
                                   dtype=object))
    _, tables = run_audit(t, ["s", "sex"], min_group_size=1)
    prev = tables["prevalence"].query("split == 'all'")
    assert set(prev.query("attribute == 'sex'")["group"]) == {"F", "M", "<NA>"}
    assert _get(prev, "all", "sex", "<NA>")["n"] == 3
    assert set(tables["univariate"].query("attribute == 'sex'")["group"]) == {"F", "M", "<NA>"}
    # rows 1 and 3 (s = 1, 0) and row 6 (s = 1): the intersection spells it the same way
    assert _get(prev, "all", "s&sex", "1&<NA>")["n"] == 2


def test_balance_against_the_whole(table):
    bal = balance_table(prevalence_table(table, ["s"]))
    test_s0 = bal[(bal["split"] == "test") & (bal["attribute"] == "s") & (bal["group"] == "0")]
    # s=0 is 40 % of the whole and absent from test
    assert test_s0[["share", "share_all", "share_diff"]].values.tolist() == [[0.0, 0.4, -0.4]]
    train_s1 = bal[(bal["split"] == "train") & (bal["group"] == "1")].iloc[0]
    assert train_s1["prevalence_diff"] == pytest.approx(2 / 3 - 4 / 6)


def _kidney_stones():
    """Charig et al. 1986: treatment A is better within each stone size, B better overall."""
    cells = [  # (treatment, size, successes, total)
        ("A", "small", 81, 87), ("B", "small", 234, 270),
        ("A", "large", 192, 263), ("B", "large", 55, 80)]
    frames = [pd.DataFrame({"treatment": t, "size": s,
                            "label": np.r_[np.ones(k, int), np.zeros(n - k, int)]})
              for t, s, k, n in cells]
    return pd.concat(frames, ignore_index=True)


def test_simpson_reversal_is_flagged_with_the_numbers():
    out = simpson_table(_kidney_stones(), ["treatment", "size"], min_effect=0.02)
    row = out[(out["attribute"] == "treatment") & (out["stratified_by"] == "size")].iloc[0]
    assert row["group"] == "B" and row["n"] == 350
    assert row["crude_diff"] == pytest.approx(289 / 350 - 273 / 350)  # B better overall (+0.046)
    assert row["adjusted_diff"] < -0.02  # A better within each size
    assert row["flag"] == "reverses"
    assert "large: -0.043 (n=343)" in row["strata"] and "small: -0.064 (n=357)" in row["strata"]


def test_simpson_vanishing_association():
    # label depends on age only; sex is confounded with age: a crude sex gap that vanishes
    rng = np.random.default_rng(0)
    n = 20_000
    old = rng.random(n) < 0.5
    sex = np.where(rng.random(n) < np.where(old, 0.8, 0.2), "F", "M")
    label = (rng.random(n) < np.where(old, 0.6, 0.2)).astype(int)
    t = pd.DataFrame({"sex": sex, "age_group": np.where(old, "60+", "<60"), "label": label})
    row = simpson_table(t, ["sex", "age_group"], 0.02).query("attribute == 'sex'").iloc[0]
    assert abs(row["crude_diff"]) > 0.2 and abs(row["adjusted_diff"]) < 0.01
    assert row["flag"] == "vanishes"
    # and age, adjusted for sex, stays associated: no flag
    age = simpson_table(t, ["sex", "age_group"], 0.02).query("attribute == 'age_group'")
    assert (age["flag"] == "").all()


def test_run_audit_summary_has_every_part(table):
    t = table.assign(sex=list("FFMMFMFMFM"))
    summary, tables = run_audit(t, ["s", "sex"], min_group_size=1)
    assert set(tables) == {"prevalence", "univariate", "balance", "simpson"}
    assert summary["imbalance"] == {"label": 1.0, "s": 1.5, "sex": 1.0}
    assert set(summary["balance"]) == {"test", "train", "val"}
    assert "s&sex" in set(tables["prevalence"]["attribute"])
    assert summary["simpson"] == [] or all("flag" in f for f in summary["simpson"])
    with pytest.raises(ValueError, match=r"audit\.attributes: column\(s\) \['race'\] not found"):
        run_audit(t, ["race"], min_group_size=1)


def test_run_audit_flags_simpson_in_warnings():
    t = _kidney_stones().assign(split="train")
    t.insert(0, "row", np.arange(len(t)))
    summary, _ = run_audit(t, ["treatment", "size"], min_group_size=1)
    assert any(w.startswith("Simpson: prevalence difference treatment=B vs the rest is +0.046 "
                            "overall but -0.") for w in summary["warnings"])


def test_run_audit_of_an_empty_index_says_so(table):
    with pytest.raises(ValueError, match=r"^audit: the index has 0 rows, no image to audit; "
                                         r"prepare refuses to write an empty index"):
        run_audit(table.iloc[:0], ["s"], min_group_size=1)


# ---------------------------------------------------------------- images left out at prepare
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import yaml  # noqa: E402

from biaslab.data.audit import rejected_kind, rejected_summary  # noqa: E402
from tests.conftest import ROOT  # noqa: E402


@pytest.mark.parametrize(("reason", "kind"), [
    ("duplicate of good/img000.png (table row 0)", "duplicate"),
    ("duplicate of a: b.png", "duplicate"),
    ("too small: 1x1 px (prepare.min_side = 8)", "too small"),
    ("extreme aspect ratio: 10000x10 px, 1000:1 (prepare.max_aspect = 10)",
     "extreme aspect ratio"),
    ("outside the data root (.. or a symbolic link out)", "outside the data root"),
    ("truncated image (image file is truncated)", "truncated image"),
    ("unreadable (UnidentifiedImageError: cannot identify image file)", "unreadable"),
    ("label maybe is not 0/1", "label not 0/1"),
    ("label a (b): c is not 0/1", "label not 0/1"),
    ("missing file", "missing file"),
])
def test_rejected_kind_is_the_reason_first_words(reason, kind):
    assert rejected_kind(reason) == kind


REJECTED = pd.DataFrame({
    "path": ["a.png", "b.png", "c.png", "d.png", "e.png"], "table_row": ["", "3", "4", "", "7"],
    "reason": ["missing file", "duplicate of x.png (table row 0)", "too small: 2x2 px",
               "duplicate of y.png", "missing file"]})


def test_rejected_summary_counts_by_kind_most_first():
    assert rejected_summary(REJECTED) == {
        "n": 5, "duplicates": 2, "by_kind": {"duplicate": 2, "missing file": 2, "too small": 1}}
    assert rejected_summary(REJECTED.iloc[:0]) == {"n": 0, "duplicates": 0, "by_kind": {}}


def test_run_audit_reports_rejected_images_and_warns_about_duplicates(table):
    summary, _ = run_audit(table, ["s"], min_group_size=1, rejected=REJECTED)
    assert summary["rejected"]["duplicates"] == 2
    assert summary["warnings"][-1] == (
        "prepare removed 2 duplicate image(s) (the same file listed twice, or identical "
        "pixels), keeping the first copy of each: the data has fewer distinct images than it "
        "lists (see rejected.csv, reason 'duplicate of ...')")
    summary, _ = run_audit(table, ["s"], min_group_size=1, rejected=REJECTED.iloc[[0, 2]])
    assert summary["rejected"]["by_kind"] == {"missing file": 1, "too small": 1}
    assert not [w for w in summary["warnings"] if "duplicate" in w]
    assert "rejected" not in run_audit(table, ["s"], min_group_size=1)[0]


def _run_stage(tmp_path, table, rejected):
    table[["row", "label"]].to_parquet(tmp_path / "index.parquet")
    table[["row", "s"]].to_parquet(tmp_path / "bias.parquet")
    table[["row", "split"]].to_parquet(tmp_path / "split.parquet")
    if rejected is not None:
        rejected.to_csv(tmp_path / "rejected.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"audit": {"min_group_size": 1}}))
    args = [f"--{name}={tmp_path / f'{name}.parquet'}" for name in ("index", "bias", "split")]
    return subprocess.run(
        [sys.executable, "-m", "stages.audit", *args, f"--rejected={tmp_path / 'rejected.csv'}",
         f"--summary={tmp_path / 'audit.json'}", f"--tables={tmp_path / 'audit'}"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True)


def test_stage_reads_rejected_csv_and_warns_about_duplicates(tmp_path, table):
    proc = _run_stage(tmp_path, table, REJECTED)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("audit: warning: prepare removed 2 duplicate image(s) ")
    assert "5 rejected at prepare" in proc.stdout
    summary = json.loads((tmp_path / "audit.json").read_text())
    assert summary["rejected"] == rejected_summary(REJECTED)


def test_stage_errors_are_one_line(tmp_path, table):
    proc = _run_stage(tmp_path, table, None)
    assert proc.returncode == 1
    assert proc.stderr == f"audit: error: {tmp_path / 'rejected.csv'}: missing; run the stage " \
                          "that writes it (dvc repro)\n"
    proc = _run_stage(tmp_path, table.iloc[:0], REJECTED.iloc[:0])
    assert proc.returncode == 1 and not (tmp_path / "audit.json").exists()
    assert proc.stderr.startswith("audit: error: audit: the index has 0 rows, no image to "
                                  "audit; ") and proc.stderr.count("\n") == 1


NIH_TABLE = SHARED / "data" / "nih_metadata" / "Data_Entry_2017_v2020.csv.gz"


@pytest.mark.skipif(not NIH_TABLE.exists(), reason=f"real NIH table not available at {NIH_TABLE}")
def test_audit_on_the_full_real_nih_table():
    from biaslab.data.sources.nih import nih_index, read_nih_table
    from biaslab.data.split import stratified_split

    index, _ = nih_index(read_nih_table(NIH_TABLE), finding="any", views=[], age_bins=[40, 60, 80])
    index.insert(0, "row", np.arange(len(index)))
    split = stratified_split(index, {"train": 0.6, "val": 0.2, "test": 0.2},
                             ["label", "sex"], seed=0, min_stratum=5)
    summary, tables = run_audit(index.assign(split=split["split"].to_numpy()),
                                ["sex", "age_group", "view"], min_group_size=30)
    assert summary["n"] == 112_120
    assert summary["groups"]["sex"]["M"]["n"] == 63_340
    assert summary["prevalence"] == pytest.approx(1 - 0.538, abs=1e-3)
    assert summary["imbalance"]["sex"] == pytest.approx(63_340 / 48_780, abs=1e-3)
    assert max(summary["balance"]["train"].values()) < 0.05  # stratified: each split ~ whole
    view = tables["simpson"].query("attribute == 'view' and stratified_by == 'sex'").iloc[0]
    assert view["crude_diff"] < -0.1  # PA images are less often positive than AP ones
