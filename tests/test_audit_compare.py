"""`biaslab audit --compare A B`: two models on the same test images, paired.

On tiny generated data: a copy of a model with one group's positives missed is found less fair
(interval excluding 0, small p); a model against its identical copy differs by 0 with p = 1;
under H0 (two exchangeable noisy models) the paired permutation test rejects at about its
level; the paired interval is narrower than an unpaired one when the models agree on most
images; seeds pair seed i with seed i; the p-values are corrected with the grid's; bad pairs
are one line.
"""

import numpy as np
import pandas as pd
import pytest

from biaslab.audit.compare import paired_bootstrap, paired_pvalues
from biaslab.cli.main import main
from biaslab.fairness.corrections import adjust
from biaslab.fairness.metrics import group_report

FAST = ["--n-boot", "200", "--n-perm", "199"]
EOD = "sex.equal_opportunity_difference"


def decisions_table(n_patients=200, models=("A", "B"), miss_f=(), seed=0, noise=0.1):
    """One row per (model, image), hard decisions: each model right on an image but for
    ``noise`` of them at random; a model named in ``miss_f`` also misses every positive of
    sex F (its decisions there flipped to 0)."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), 2)
    n = len(patient)
    label = rng.integers(0, 2, n)
    sex = np.where(patient % 2 == 0, "F", "M")
    shared = np.where(rng.random(n) < noise, 1 - label, label)
    frames = []
    for model in models:
        decision = shared.copy()
        if model in miss_f:
            decision[(sex == "F") & (label == 1)] = 0
        frames.append(pd.DataFrame({
            "image": [f"img{i:04d}" for i in range(n)], "patient": [f"p{p}" for p in patient],
            "sex": sex, "label": label, "decision": decision, "model": model}))
    return pd.concat(frames, ignore_index=True)


def run_audit(tmp_path, table, *options):
    path = tmp_path / "preds.csv"
    table.to_csv(path, index=False)
    return main(["audit", "--predictions", str(path), "--out", str(tmp_path / "out"),
                 "--groups", "sex", "--patient", "patient", "--id", "image", "--model",
                 "model", "--decision", "decision", *FAST, *options])


def compared(tmp_path) -> pd.DataFrame:
    out = pd.read_csv(tmp_path / "out" / "compare.csv")
    assert set(out["method"]) == {"given"}  # decisions only: no threshold method applies
    return out.set_index("figure")


def test_a_model_missing_one_groups_positives_is_found_less_fair(tmp_path):
    table = decisions_table(miss_f=("B",))
    # enough permutations for an adjusted p below 0.05 in a family of about 30 tests
    assert run_audit(tmp_path, table, "--compare", "A", "B", "--n-perm", "1999") == 0
    row = compared(tmp_path).loc[EOD]
    assert row["difference"] == pytest.approx(row["B"] - row["A"])
    assert row["difference"] < -0.5  # B finds none of the women's positives
    assert row["difference_hi"] < 0 and row["p"] < 0.01
    assert row["fairer"] == "A" and row["tells"]
    assert row["patients"] == 200 and row["images"] == 400
    # the grid has both models, and the report says it in a sentence
    page = (tmp_path / "out" / "report.html").read_text()
    assert "A against B" in page
    assert f"{EOD}: A is fairer" in page and "the data can tell" in page


def test_a_model_against_its_identical_copy_differs_by_zero_with_p_one(tmp_path):
    table = decisions_table()
    assert run_audit(tmp_path, table, "--compare", "A", "B") == 0
    out = compared(tmp_path)
    present = out[out["difference"].notna()]
    assert len(present) >= 10
    assert (present["difference"] == 0).all()
    assert (present["difference_lo"] == 0).all() and (present["difference_hi"] == 0).all()
    assert (present["p"] == 1).all() and not present["tells"].any()
    assert present["fairer"].isna().all()  # "" in the CSV: neither is fairer


def test_the_comparisons_pvalues_are_corrected_with_the_grids(tmp_path):
    table = decisions_table(miss_f=("B",))
    assert run_audit(tmp_path, table, "--compare", "A", "B") == 0
    grid = pd.read_csv(tmp_path / "out" / "grid.csv")
    out = pd.read_csv(tmp_path / "out" / "compare.csv")
    columns = [c for c in grid.columns if c.endswith("_p")]
    family = np.r_[grid[columns].to_numpy(float).ravel(), out["p"].to_numpy(float)]
    adjusted = adjust(family, "holm")
    own = grid[columns].size
    assert np.allclose(out["p_adj"], adjusted[own:], equal_nan=True)
    assert np.allclose(grid[[c + "_adj" for c in columns]].to_numpy(float).ravel(),
                       adjusted[:own], equal_nan=True)


def noisy_pair(rng, n=300, patients=150, flip=0.15):
    """Two exchangeable models: each flips the label on ``flip`` of the images at random."""
    y = rng.integers(0, 2, n)
    groups = np.where(rng.random(patients) < 0.5, "F", "M")[np.arange(n) % patients]
    d = np.stack([np.where(rng.random(n) < flip, 1 - y, y) for _ in range(2)])
    return y, d, groups, np.arange(n) % patients


def test_under_h0_the_paired_test_rejects_at_about_its_level():
    rng = np.random.default_rng(3)
    pvalues = []
    for _ in range(60):
        y, d, groups, units = noisy_pair(rng)
        p = paired_pvalues(y, d[:, None], None, [("sex", groups)], units, n_perm=199,
                           seed=int(rng.integers(1 << 30)))
        pvalues.append(p[EOD])
    pvalues = np.array(pvalues)
    # 60 tests at level 0.1: 6 expected; 15 or more has probability < 0.001 under H0
    assert (pvalues <= 0.1).sum() < 15
    assert 0.35 < pvalues.mean() < 0.65  # about uniform


def test_the_paired_interval_is_narrower_than_the_unpaired_one_for_correlated_models():
    rng = np.random.default_rng(5)
    n = 600
    y = rng.integers(0, 2, n)
    groups = np.where(np.arange(n) % 2 == 0, "F", "M")
    a = np.where(rng.random(n) < 0.2, 1 - y, y)
    b = np.where(rng.random(n) < 0.03, 1 - a, a)  # B agrees with A on 97% of the images
    paired = paired_bootstrap(y, np.stack([a, b]), None, groups, np.arange(n), attr="sex",
                              overall=True, n_boot=400, seed=0)["accuracy"]
    lo, hi = np.quantile(paired, [0.025, 0.975])
    half = []
    for k, d in enumerate((a, b)):  # each model's own interval, independent resamples
        per_group, _ = group_report(y, d, groups, resample="image", n_boot=400, seed=k)
        overall = per_group.iloc[-1]
        half.append((overall["accuracy_hi"] - overall["accuracy_lo"]) / 2)
    unpaired = 2 * np.hypot(*half)  # the width of B - A with A and B independent
    assert hi - lo < 0.5 * unpaired


def test_seeds_pair_seed_i_with_seed_i_and_add_their_variance(tmp_path):
    parts = [decisions_table(models=(m,), seed=0, noise=0.1).assign(
        decision=lambda t, k=k: np.where(np.random.default_rng(k).random(len(t)) < 0.05,
                                         1 - t["decision"], t["decision"]))
        for k, m in enumerate(("a0", "a1", "a2", "b0", "b1", "b2"))]
    table = pd.concat(parts, ignore_index=True)
    assert run_audit(tmp_path, table, "--seeds-of", "base=a0,a1,a2", "--seeds-of",
                     "mitigated=b0,b1,b2", "--compare", "base", "mitigated") == 0
    out = compared(tmp_path)
    seeds = pd.read_csv(tmp_path / "out" / "seeds.csv").set_index("seed")
    pairs = [seeds.loc[b, "accuracy"] - seeds.loc[a, "accuracy"]
             for a, b in (("a0", "b0"), ("a1", "b1"), ("a2", "b2"))]
    row = out.loc["accuracy"]
    assert row["pairs"] == 3
    assert row["difference"] == pytest.approx(np.mean(pairs))
    assert row["difference_seed_sd"] == pytest.approx(np.std(pairs, ddof=1))
    assert row["difference_lo"] <= row["difference"] <= row["difference_hi"]


def error(tmp_path, capsys, table, *options):
    code = run_audit(tmp_path, table, *options)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # the pair is checked before any work
    return err.removeprefix("biaslab audit: error: ").strip()


def test_a_bad_pair_is_one_line(tmp_path, capsys):
    table = decisions_table(models=("A", "B", "C"))
    assert "no model or recipe 'Z'; the table's are: A, B, C" in error(
        tmp_path, capsys, table, "--compare", "A", "Z")
    assert "expected two different models" in error(tmp_path, capsys, table, "--compare",
                                                     "A", "A")
    assert "'r' has 2 seed(s) and 'C' 1" in error(
        tmp_path, capsys, table, "--seeds-of", "r=A,B", "--compare", "r", "C")
    fewer = table.drop(index=table.index[table["model"] == "B"][:4])
    err = error(tmp_path, capsys, fewer, "--compare", "A", "B")
    assert "--compare A B: the models were not run on the same test images (4 test image(s) " \
           "of 'A' are not in 'B': 'img0000', 'img0001', 'img0002' and 1 more)" in err


def test_the_sentences_say_who_is_fairer_by_how_much_and_whether_the_data_can_tell():
    from biaslab.audit.compare_words import sentences

    base = {"method": "fixed", "a_model": "old", "b_model": "new", "pairs": 1, "patients": 9,
            "images": 18}
    table = pd.DataFrame([
        base | {"figure": EOD, "A": -0.30, "B": -0.05, "difference": 0.25, "difference_lo": 0.1,
                "difference_hi": 0.4, "p": 0.001, "p_adj": 0.01, "fairer": "new", "tells": True,
                "note": ""},
        base | {"figure": "sex.disparate_impact", "A": 0.9, "B": 0.8, "difference": -0.1,
                "difference_lo": -0.3, "difference_hi": 0.1, "p": 0.3, "p_adj": 0.6,
                "fairer": "old", "tells": False, "note": ""},
        base | {"figure": "sex.auc_gap", "A": np.nan, "B": 0.01, "difference": np.nan,
                "difference_lo": np.nan, "difference_hi": np.nan, "p": np.nan,
                "p_adj": np.nan, "fairer": "", "tells": False,
                "note": "missing for old (too few cases: grid.csv's insufficient)"},
    ])
    [said] = sentences(table, level=0.95)
    assert said["summary"] == ("Of 2 gaps compared, new is fairer on 1 (the data can tell on 1) "
                               "and old on 1 (the data can tell on 0).")
    eod, di, auc = said["lines"]
    assert eod.startswith(f"{EOD}: new is fairer, -0.050 against old's -0.300 (|{EOD}| 0.050 "
                          "against 0.300, 0.250 closer to the ideal)")
    assert eod.endswith("new - old = +0.250 [+0.100, +0.400], adjusted p 0.01: the data can tell.")
    assert "old is fairer" in di and "|log sex.disparate_impact| 0.105 against 0.223" in di
    assert di.endswith("the data cannot tell (the interval includes 0, adjusted p >= 0.05).")
    assert auc == "sex.auc_gap: not compared: missing for old (too few cases: grid.csv's " \
                  "insufficient)."
