"""The sweep: its plan, the table, the figure; and one real sweep (DVC's queue, watched as
tests/test_sweep_queue.py tests it piece by piece)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from biaslab.sweep import table as sw
from biaslab.sweep.figure import sweep_figure
from tests.conftest import ROOT, copy_repo, repo_env, sh

# ------------------------------------------------------------------ the plan

def test_bias_plan_sets_p0_and_p1_together_for_every_seed():
    plan = sw.plan(sw.BIAS_STRENGTH, ["0", "0.4", "0.5"], [0, 1], prefix="sweep-x",
                   fixed=["train.epochs=5"])
    assert [(e.name, e.value, e.seed) for e in plan] == [
        ("sweep-x-v0-s0", 0, 0), ("sweep-x-v0-s1", 0, 1), ("sweep-x-v1-s0", 0.4, 0),
        ("sweep-x-v1-s1", 0.4, 1), ("sweep-x-v2-s0", 0.5, 0), ("sweep-x-v2-s1", 0.5, 1)]
    # 0.5 - 0.4 is 0.09999999999999998 in floating point: written as 0.1
    # each experiment trains one seed
    assert plan[3].settings == ("bias.p0=0.1", "bias.p1=0.9", "train.seeds=[1]",
                                "train.epochs=5")
    assert plan[0].settings[:2] == ("bias.p0=0.5", "bias.p1=0.5")
    assert plan[4].settings[:2] == ("bias.p0=0.0", "bias.p1=1.0")


def test_any_param_can_be_swept_as_given():
    plan = sw.plan("split.train_composition.share", ["0", "0.25", "1"], [3], prefix="s")
    assert [e.settings for e in plan] == [
        ("split.train_composition.share=0", "train.seeds=[3]"),
        ("split.train_composition.share=0.25", "train.seeds=[3]"),
        ("split.train_composition.share=1", "train.seeds=[3]")]
    assert [e.value for e in plan] == [0, 0.25, 1]
    models = sw.plan("+train.model", ["small_cnn", "resnet18"], [0], prefix="s")
    assert models[1].settings[0] == "+train.model=resnet18"  # DVC's + (add a key) is kept
    assert models[1].value == "resnet18"


def test_a_key_params_yaml_lacks_is_added_with_a_plus_as_dvc_needs():
    params = {"split": {"train_size": 0, "train_composition": {}}, "train": {"seeds": [0, 1]}}
    plan = sw.plan("split.train_composition.share", ["0.5"], [0], prefix="s", params=params,
                   fixed=["split.train_size=120", "split.train_composition.attribute=sex",
                          "+split.train_composition.value=F"])
    assert plan[0].settings == (
        "+split.train_composition.share=0.5", "train.seeds=[0]", "split.train_size=120",
        "+split.train_composition.attribute=sex", "+split.train_composition.value=F")
    assert sw.applied(params, plan[0].settings) == {
        "split": {"train_size": 120, "train_composition": {
            "share": 0.5, "attribute": "sex", "value": "F"}}, "train": {"seeds": [0]}}
    assert params["split"]["train_composition"] == {}  # not changed in place


def test_applied_reads_values_as_yaml_1_2_like_dvc():
    got = sw.applied({"train": {"lr": 0.1, "pretrained": "x.pt"}, "audit": {}}, [
        "train.lr=1e-3", "~train.pretrained", "+audit.attributes=[s, sex]", "+new.flag=true"])
    assert got == {"train": {"lr": 0.001}, "audit": {"attributes": ["s", "sex"]},
                   "new": {"flag": True}}


@pytest.mark.parametrize(("args", "says"), [
    (["--param", "train.lr", "--values", "0.002", "-1"],
     "train.lr=-1 train.seeds=[0]: params.yaml: train.lr = -1 is not allowed"),
    (["--param", "bias.p3", "--values", "0.1"], "expected a known key of bias"),
    (["--values", "0.1", "--set", "train.epochs=0"], "train.epochs = 0 is not allowed"),
    (["--param", "train.lr"], "--values: give the values of train.lr"),
])
def test_the_sweep_stops_on_a_bad_setting_before_queueing_anything(args, says, tmp_path,
                                                                     monkeypatch, capsys):
    from biaslab.cli.main import main

    for name in ("params.yaml", "dvc.yaml"):  # no git, no DVC: nothing could be queued
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", *args]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # stopped before its first line: nothing planned was queued
    assert err.startswith("biaslab sweep: error: ") and err.count("\n") == 1
    assert says in err


@pytest.mark.parametrize(("param", "values", "seeds", "fixed", "says"), [
    (sw.BIAS_STRENGTH, ["0.7"], [0], [], "bias strength '0.7': a number from 0 to 0.5"),
    (sw.BIAS_STRENGTH, ["-0.1"], [0], [], "a number from 0 to 0.5"),
    (sw.BIAS_STRENGTH, ["strong"], [0], [], "bias strength 'strong'"),
    ("bias.p0", ["0.1", "0.2", "0.1"], [0], [], "VALUES: 0.1 given more than once"),
    ("bias.p0", [], [0], [], "VALUES: empty"),
    ("bias.p0", ["0.1"], [0, 0], [], "SEEDS: 0 given more than once"),
    ("bias.p0", ["0.1"], [-1], [], "SEEDS: [-1]: whole numbers >= 0 only"),
    ("train.seeds", ["[1]", "[2]"], [0], [], "train.seeds is the seed axis"),
    ("bias p0", ["1"], [0], [], "'bias p0' is not a params.yaml key"),
    ("bias.p0", ["0.1"], [0], ["train.epochs"], "SWEEP_SET: 'train.epochs' is not key=value"),
    ("bias.p0", ["0.1"], [0], ["train.seeds=[4]"], "SWEEP_SET: 'train.seeds=[4]' sets a key"),
    (sw.BIAS_STRENGTH, ["0.1"], [0], ["bias.p1=0.9"], "sets a key the sweep sets"),
])
def test_plan_rejects(param, values, seeds, fixed, says):
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
        sw.plan(param, values, seeds, prefix="s", fixed=fixed)


# ------------------------------------------------------------------ the table

def headline(flip: float) -> dict:
    """fairness.json of one experiment: two schemes x one method. DVC leaves nulls out."""
    return {scheme: {"fixed": {"balanced_accuracy": 0.9, "flip_rate": flip,
                               "shifted.accuracy": 0.8, "s.disparate_impact": 0.6,
                               "degenerate": False}}
            for scheme in ("none", "reweighing")}


def grid(flip: float, excess: bool = True) -> pd.DataFrame:
    """grid.csv of one experiment: full precision, with intervals (one pair left undefined)."""
    rows = []
    for scheme in ("none", "reweighing"):
        row = {"scheme": scheme, "method": "fixed", "n": 72, "accuracy": 0.91,
               "balanced_accuracy": 0.9012, "balanced_accuracy_lo": 0.85,
               "balanced_accuracy_hi": 0.95, "flip_rate": flip, "flip_rate_lo": flip - 0.1,
               "flip_rate_hi": flip + 0.1, "s.disparate_impact": 0.6012,
               "s.disparate_impact_lo": 0.4, "s.disparate_impact_hi": 0.8,
               "shifted.accuracy": 0.8012, "shifted.accuracy_lo": 0.7,
               "shifted.accuracy_hi": 0.9, "degenerate": False}
        if excess:
            row |= {"s.excess_disparate_impact": 0.95, "s.excess_disparate_impact_lo": 0.9,
                    "s.excess_disparate_impact_hi": 1.0}
        rows.append(row)
    return pd.DataFrame(rows)


PLAN = sw.plan(sw.BIAS_STRENGTH, ["0.1", "0.5"], [0, 1], prefix="sweep-a")
OK0, OK1, FAILED, QUEUED = (e.name for e in PLAN)  # v0-s0, v0-s1, v1-s0, v1-s1
OUTCOMES = {OK0: sw.Outcome("success", "a" * 40, headline(0.3)),
            OK1: sw.Outcome("success", "b" * 40, headline(0.2)),
            FAILED: sw.Outcome("failed", "d" * 40),
            QUEUED: sw.Outcome("queued")}


def test_table_one_row_per_experiment_scheme_method_and_failures_without_figures():
    grids = {OK0: grid(0.3), OK1: grid(0.2), FAILED: grid(0.777)}  # FAILED's is stale
    errors = {FAILED: "postprocess: error: group s=0 needs both classes"}
    table = sw.sweep_table(PLAN, OUTCOMES, grids,
                           param=sw.BIAS_STRENGTH, errors=errors)
    assert list(table.columns[:7]) == sw.ID_COLUMNS
    # grid.csv's order: the figures with an interval, then the flags
    assert list(table.columns[7:]) == [
        "balanced_accuracy", "balanced_accuracy_lo", "balanced_accuracy_hi", "flip_rate",
        "flip_rate_lo", "flip_rate_hi", "s.disparate_impact", "s.disparate_impact_lo",
        "s.disparate_impact_hi", "shifted.accuracy", "shifted.accuracy_lo",
        "shifted.accuracy_hi", "s.excess_disparate_impact", "s.excess_disparate_impact_lo",
        "s.excess_disparate_impact_hi", "degenerate", "error"]
    ok = table[table["status"] == "success"]
    assert len(ok) == 4 and set(ok["scheme"]) == {"none", "reweighing"}
    assert ok["experiment"].tolist() == [OK0, OK0, OK1, OK1]
    assert ok["value"].tolist() == [0.1] * 4 and ok["seed"].tolist() == [0, 0, 1, 1]
    # from grid.csv at full precision, not fairness.json's 4 decimals
    assert ok["s.disparate_impact"].tolist() == [0.6012] * 4
    assert ok["flip_rate_lo"].tolist() == pytest.approx([0.2, 0.2, 0.1, 0.1])
    failed = table[table["status"] == "failed"].set_index("experiment")
    assert failed.index.tolist() == [FAILED, QUEUED]
    assert failed.loc[FAILED, "error"] == errors[FAILED]
    assert failed.loc[QUEUED, "error"] == "still queued when the sweep was collected"
    assert failed.loc[FAILED, "value"] == 0.5 and failed.loc[QUEUED, "seed"] == 1
    figures = table.columns[7:-2]
    assert failed[figures].isna().all().all()  # no stale 0.777, nor anything else
    assert failed[["scheme", "method"]].isna().all().all()
    assert (table["param"] == sw.BIAS_STRENGTH).all()


def test_figures_come_from_grid_csv_with_the_reasons_of_missing_ones():
    cells = grid(0.3).assign(**{
        "s.equalized_odds_difference": np.nan, "s.equalized_odds_difference_lo": np.nan,
        "s.equalized_odds_difference_hi": np.nan, "warning": np.nan,
        "s.insufficient": "equalized_odds_difference: s=0 has 4 positives",
        "s&sex.disparate_impact": 0.5, "s&sex.disparate_impact_lo": 0.4,
        "s&sex.disparate_impact_hi": 0.6})
    table = sw.sweep_table(PLAN[:1], OUTCOMES, {OK0: cells}, param="+bias.p0")
    assert table["s.equalized_odds_difference"].isna().all()
    assert "s.equalized_odds_difference_hi" in table
    assert "s&sex.disparate_impact" not in table  # intersections stay in grid.csv
    # the reasons of missing figures come along, before the error column
    assert list(table.columns[-4:]) == ["degenerate", "warning", "s.insufficient", "error"]
    assert table["s.insufficient"].str.contains("4 positives").all()
    assert table["param"].tolist() == ["bias.p0", "bias.p0"]


def test_a_missing_experiment_or_grid_is_a_failed_row():
    outcomes = {OK0: OUTCOMES[OK0], "sweep-a-v9-s0": sw.Outcome("missing")}
    exps = [PLAN[0], sw.Experiment("sweep-a-v9-s0", 0.3, 0, ())]
    table = sw.sweep_table(exps, outcomes, {}, param=sw.BIAS_STRENGTH)
    assert table["status"].tolist() == ["failed", "failed"]
    assert table["error"].tolist() == ["no metrics/grid.csv in the experiment's commit",
                                       "left DVC's queue without a result (removed?)"]


@pytest.mark.parametrize(("log", "reason"), [
    ("Running stage 'postprocess@none':\n> python -m stages.postprocess\n"
     "postprocess: error: group s=0 needs both classes\n"
     "ERROR: failed to reproduce 'postprocess@none': exited with 1\n",
     "postprocess: error: group s=0 needs both classes"),
    ("Running stage 'train@none':\nERROR: failed to reproduce 'train@none': exited with 137\n",
     "ERROR: failed to reproduce 'train@none': exited with 137"),
    ("Reproducing experiment 'x'\nKilled\n\n", "Killed"),
    ("", "failed, with no log"),
])
def test_failure_reason(log, reason):
    assert sw.failure_reason(log) == reason


# ------------------------------------------------------------------ the figure

def sweep_rows(values, schemes=("none", "reweighing"), failed=()) -> pd.DataFrame:
    rows = []
    for i, value in enumerate(values):
        for seed in (0, 1):
            if value in failed:
                rows.append({"param": sw.BIAS_STRENGTH, "value": value, "seed": seed,
                             "status": "failed", "experiment": f"e{i}{seed}", "error": "x"})
                continue
            for scheme in schemes:
                for method in ("fixed", "youden"):
                    f = 0.1 * i + 0.01 * seed
                    rows.append({
                        "param": sw.BIAS_STRENGTH, "value": value, "seed": seed,
                        "scheme": scheme, "method": method, "status": "success",
                        "experiment": f"e{i}{seed}", **{
                            name: v for figure, mid in (
                                ("s.disparate_impact", 1 - f), ("flip_rate", f),
                                ("shifted.accuracy", 1 - f / 2),
                                ("s.excess_disparate_impact", 1 - f / 3))
                            for name, v in ((figure, mid), (f"{figure}_lo", mid - 0.05),
                                            (f"{figure}_hi", mid + 0.05))}})
    return pd.DataFrame(rows)


def scheme_lines(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_figure_one_panel_per_figure_one_line_per_scheme():
    table = sweep_rows([0, 0.1, 0.2, 0.5], failed=(0.5,))
    fig = sweep_figure(table)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [
        "disparate impact (DI)", "excess DI (DI / base-rate DI)", "flip rate (S forced 0 -> 1)",
        "shifted-test accuracy"]
    for ax in axes:
        assert scheme_lines(ax) == ["none", "reweighing"]
        assert len(ax.collections) == 4  # per scheme: its band and its seed dots
        assert ax.get_xlabel() == "bias strength k, and p0/p1 = 0.5 -/+ k"
        assert [t.get_text() for t in ax.get_xticklabels()][-1] == "0.5\n0/1"
    # the line is the mean over seeds of the fixed method, at the values that succeeded
    flip = next(line for line in axes[2].get_lines() if line.get_label() == "none")
    assert flip.get_xdata().tolist() == [0, 0.1, 0.2]
    assert flip.get_ydata() == pytest.approx([0.005, 0.105, 0.205])
    # the band: the mean of the two seeds' (mid -/+ 0.05) at every value:
    # W = (0.05 / z)², B = var(0, 0.01), T = W + B / 2, df = (T / (B / 2))²
    w, b = (0.05 / stats.norm.ppf(0.975)) ** 2, 0.01**2 / 2
    half = stats.t.ppf(0.975, ((w + b / 2) / (b / 2)) ** 2) * np.sqrt(w + b / 2)
    assert band_at(axes[2], 0.1) == pytest.approx([0.105 - half, 0.105 + half])
    assert band_at(axes[2], 0) == pytest.approx([0, 0.005 + half])  # a rate: clipped at 0
    # the failed value: a red dashed line in every panel, and named in the title
    assert all(any(tuple(line.get_xdata()) == (0.5, 0.5) for line in ax.get_lines())
               for ax in axes)
    assert "failed (red dashes), no figures: 0.5 (seed 0), 0.5 (seed 1)" in fig.get_suptitle()


def band_at(ax, x: float, scheme: int = 0) -> list[float]:
    """The band's lower and upper edges at ``x``."""
    band = ax.collections[2 * scheme].get_paths()[0].vertices
    return sorted(set(band[np.isclose(band[:, 0], x), 1].round(12).tolist()))


def test_figure_a_value_with_one_seed_left_shows_its_own_interval():
    table = sweep_rows([0, 0.1])
    table = table[(table["value"] == 0) | (table["seed"] == 1)]  # seed 0 of 0.1 lost
    ax = sweep_figure(table).axes[2]
    assert band_at(ax, 0.1) == pytest.approx([0.06, 0.16])  # seed 1's 0.11 -/+ 0.05
    assert band_at(ax, 0)[1] - 0.005 > 0.05  # two seeds: wider than either seed's -/+ 0.05
    assert "band: its 95% interval (the seeds' bootstrap intervals widened" in \
        ax.figure.get_suptitle()


def test_figure_without_excess_di_and_with_categories():
    table = sweep_rows(["small_cnn", "resnet18"], schemes=("none",))
    table = table.drop(columns=[c for c in table if "excess" in c]).assign(param="train.model")
    fig = sweep_figure(table, method="youden")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [
        "disparate impact (DI)", "flip rate (S forced 0 -> 1)", "shifted-test accuracy"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["small_cnn", "resnet18"]
    assert axes[0].get_xlabel() == "train.model"
    assert scheme_lines(axes[1]) == ["none"]
    assert "youden decisions" in fig.get_suptitle()


def test_figure_when_every_experiment_failed():
    fig = sweep_figure(sweep_rows([0.1], failed=(0.1,)).assign(
        **{"flip_rate": np.nan, "shifted.accuracy": np.nan}))
    assert "no experiment has fixed decisions to show" in fig.get_suptitle()
    assert all(scheme_lines(ax) == [] for ax in fig.axes)


# ------------------------------------------------------------------ a real sweep

@pytest.mark.slow
def test_sweep_end_to_end(tiny_repo, tmp_path):
    """Two experiments, one epoch: one runs, one fails in evaluate (a test group has fewer
    than evaluate.min_group_size = 1000 rows)."""
    repo = copy_repo(tiny_repo, tmp_path / "repo")
    # `python -m` puts the cwd first: the tiny repo's copy of biaslab runs, the checkout's after
    env = {**repo_env(), "PYTHONPATH": str(ROOT)}

    def sweep(*args):
        return subprocess.run([sys.executable, "-m", "biaslab", "sweep", "--param",
                               "evaluate.min_group_size", "--values", "1", "1000", "--seeds",
                               "0", "--poll", "2", "--set", "train.epochs=1",
                               "evaluate.n_boot=20", *args],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=600)

    # another experiment waiting in the queue: the sweep would run it too, so it refuses
    sh(repo, "dvc", "exp", "run", "--queue", "-q", "-S", "train.seeds=[7]", "-n", "other")
    refused = sweep()
    assert refused.returncode == 1
    assert "the DVC queue already holds 1 experiment(s) (other)" in refused.stderr
    sh(repo, "dvc", "queue", "remove", "other")

    proc = sweep()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 of 2 experiments succeeded" in proc.stdout
    table = pd.read_csv(repo / "metrics" / "sweep.csv")
    ok, failed = table[table["status"] == "success"], table[table["status"] == "failed"]
    assert len(ok) == 8 and (ok["value"] == 1).all() and (ok["seed"] == 0).all()
    assert set(ok["scheme"]) == {"none", "reweighing"}
    assert {"flip_rate", "flip_rate_lo", "flip_rate_hi", "s.disparate_impact_lo"} <= set(table)
    assert ok["balanced_accuracy_lo"].notna().all()
    assert failed["value"].tolist() == [1000]
    assert failed["error"].str.startswith("evaluate: error:").all()
    assert "evaluate.min_group_size=1000" in failed["error"].iloc[0]
    assert failed["flip_rate"].isna().all()
    assert (repo / "reports" / "sweep.png").stat().st_size > 10_000
    # one value x one seed that succeeded: one block, nothing to rank, and it says so
    assert "sweep: ranks: none (rank test of rank_score: needs at least 2 methods and 2 " \
        "blocks" in proc.stdout
    # the experiments stay in dvc exp show, under their names
    listed = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    names = {e["name"] for b in listed for e in (b.get("experiments") or [])}
    assert set(table["experiment"]) <= names
    assert not any(n.startswith(".") for n in os.listdir(repo / "metrics"))  # no temporaries


def test_the_committed_sweep_ranks_its_methods_over_values_and_seeds():
    from biaslab.cli.sweep import rank_test

    table = pd.read_csv(ROOT / "metrics" / "sweep.csv")
    result, said = rank_test(table, "balanced_accuracy", 0.05)
    blocks = table[table["status"] == "success"][["value", "seed"]].drop_duplicates()
    # k = 0.5: S decides the label, equalized odds has no figure there: those blocks left out
    assert result.dropped == ("value, seed 0.5 0", "value, seed 0.5 1")
    assert result.n_blocks == len(blocks) - 2 and result.n_methods == 8
    assert "Left out, as some method had no figure there: 2 block(s)" in said
    assert result.control == "none/fixed" and len(result.pairwise) == 7
    assert said.startswith(f"Ranked on balanced_accuracy over {len(blocks) - 2} blocks, the 8 ")
    gap, _ = rank_test(table, "s.equalized_odds_difference", 0.05)
    assert gap.figure == "|s.equalized_odds_difference|" and not gap.higher_is_better


@pytest.mark.parametrize("figure", ["balanced_acc", "s.equalized_odds", "groups"])
def test_a_misspelt_rank_by_stops_the_sweep_before_it_starts(figure):
    from biaslab.cli.sweep import check_rank_by

    with pytest.raises(ValueError, match=f"--rank-by '{figure}': expected a figure of the test"):
        check_rank_by(figure)
