"""End-to-end: the DVC pipeline in a temporary git repo, on tiny params.

The story a user lives, one step per test: a full `dvc repro`, a second one that runs nothing,
an experiment on the bias, a post-processing change and a new weighting scheme, checking each
time that exactly the stages that depend on the change ran. Each test starts from its own copy
of the repo after the first `dvc repro` (conftest.built_repo), so that it passes alone and in any
order.
"""

import json
import re

import pandas as pd
import pytest

from tests.conftest import copy_repo, edit_params, sh

pytestmark = pytest.mark.slow

# `params` validates params.yaml: any edit of the file reruns it (and only it, unless a value
# that a stage depends on changed)
ALL_STAGES = {
    "params", "prepare", "bias", "split", "audit", "evaluate", "report",
    *(f"{stage}@{scheme}" for stage in ("weights", "explain") for scheme in ("none", "reweighing")),
    *(f"{stage}@{scheme}-0" for stage in ("train", "predict", "postprocess")
      for scheme in ("none", "reweighing")),
}


def ran(proc) -> set[str]:
    """Names of the stages a dvc command actually ran (not skipped)."""
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


@pytest.fixture
def repo(built_repo, tmp_path):
    """A copy of the repo after the first full `dvc repro`, its results committed."""
    return copy_repo(built_repo[0], tmp_path / "repo")


@pytest.fixture
def first_repro(built_repo):
    return built_repo[1]


def test_full_repro_builds_every_artifact(repo, first_repro):
    assert ran(first_repro) == ALL_STAGES
    for path in ("metrics/fairness.json", "metrics/grid.csv", "reports/index.html",
                 "data/prepared/pixels.npy", "metrics/train/none/seed0/curves.csv"):
        assert (repo / path).is_file(), path
    headline = json.loads((repo / "metrics/fairness.json").read_text())
    assert set(headline) == {"recommended", "baseline"}
    assert headline["baseline"]["pair"] == "none/fixed"
    assert set(headline["baseline"]) == {
        "pair", "balanced_accuracy", "flip_rate", "shifted.accuracy", "s.disparate_impact",
        "s.equalized_odds_difference", "s.excess_disparate_impact", "degenerate"}
    grid = pd.read_csv(repo / "metrics/grid.csv")
    assert len(grid) == 8 and {"accuracy_lo", "accuracy_hi", "s.groups"} <= set(grid.columns)
    page = (repo / "reports/index.html").read_text()
    assert "Verdict" in page and "data:image/png;base64," in page
    # the digits have no patient ids: the page's text and the stage lines speak of images
    text = " ".join(re.sub(r"<(style|script)\b.*?</\1>|<[^>]+>", " ", page, flags=re.S).split())
    assert "patient" not in text.lower() and "resampling images within each group" in text
    assert re.search(r"^split: \d+ images: \{", first_repro.stdout, re.M), first_repro.stdout
    assert re.search(r"^audit: \d+ images, prevalence", first_repro.stdout, re.M)
    assert sh(repo, "git", "status", "--porcelain").stdout == ""  # all committed


def test_second_repro_runs_nothing(repo):
    assert ran(sh(repo, "dvc", "repro")) == set()


def test_retraining_gives_the_same_bytes_so_nothing_downstream_reruns(repo):
    model = repo / "models/none/seed0/model.pt"
    before = model.read_bytes()
    assert ran(sh(repo, "dvc", "repro", "-f", "-s", "train@none-0")) == {"train@none-0"}
    assert model.read_bytes() == before  # same params and seed, same artifact
    assert ran(sh(repo, "dvc", "repro")) == set()


def test_bias_experiment_reruns_bias_and_downstream_not_prepare(repo):
    proc = sh(repo, "dvc", "exp", "run", "-S", "bias.p0=0.4")
    stages = ran(proc)
    assert "prepare" not in stages
    assert {"bias", "split", "train@none-0", "evaluate", "report"} <= stages
    show = sh(repo, "dvc", "exp", "show", "--no-pager", "--csv").stdout
    header = show.splitlines()[0]
    assert "bias.p0" in header and "baseline.balanced_accuracy" in header
    assert "0.4" in show
    sh(repo, "dvc", "metrics", "diff")


def test_postprocess_change_reruns_only_postprocess_and_what_reads_decisions(repo):
    edit_params(repo, postprocess={"fixed_threshold": 0.4})
    assert ran(sh(repo, "dvc", "repro")) == {
        "params", "postprocess@none-0", "postprocess@reweighing-0", "evaluate", "report",
        # explain picks its TP/FP/TN/FN images at the model's own threshold
        "explain@none", "explain@reweighing"}
    thresholds = json.loads((repo / "metrics/thresholds/none/seed0.json").read_text())
    assert thresholds["fixed"]["threshold"] == 0.4


def test_new_scheme_trains_only_the_new_model_and_plots_every_scheme(repo):
    edit_params(repo, weights={"schemes": ["none", "reweighing", "class_balanced"]})
    assert ran(sh(repo, "dvc", "repro")) == {
        "params", "weights@class_balanced", "train@class_balanced-0", "predict@class_balanced-0",
        "postprocess@class_balanced-0", "explain@class_balanced", "evaluate", "report"}
    assert "class_balanced" in set(pd.read_csv(repo / "metrics/grid.csv")["scheme"])
    proc = sh(repo, "dvc", "plots", "show", "--out", "plots-out")
    assert "failed to load" not in proc.stdout + proc.stderr
    page = (repo / "plots-out" / "index.html").read_text()
    for scheme in ("none", "reweighing", "class_balanced"):
        assert f"metrics/train/{scheme}/seed0/curves.csv" in page


def test_another_training_seed_trains_only_that_seed(repo):
    edit_params(repo, train={"seeds": [0, 1]})
    assert ran(sh(repo, "dvc", "repro")) == {
        "params", "train@none-1", "train@reweighing-1", "predict@none-1", "predict@reweighing-1",
        "postprocess@none-1", "postprocess@reweighing-1", "evaluate", "report"}
    grid = pd.read_csv(repo / "metrics/grid.csv")
    per_seed = pd.read_csv(repo / "metrics/seeds.csv")
    assert len(grid) == 8 and (grid["seeds"] == "0 1").all()
    assert len(per_seed) == 16 and sorted(set(per_seed["seed"])) == [0, 1]
    # the grid's figure is the mean of the seeds'
    mean = per_seed.groupby(["scheme", "method"], sort=False)["balanced_accuracy"].mean()
    assert grid.set_index(["scheme", "method"])["balanced_accuracy"].to_numpy() == \
        pytest.approx(mean.to_numpy())


def test_exp_show_and_metrics_diff_list_only_the_headline(repo):
    proc = sh(repo, "dvc", "metrics", "show", "--json")
    (workspace,) = json.loads(proc.stdout).values()
    assert set(workspace["data"]) == {"metrics/fairness.json", "metrics/verdict.json"}


def test_a_column_the_index_lacks_stops_the_run_at_split_before_any_training(repo):
    model = repo / "models/none/seed0/model.pt"
    before = model.read_bytes()
    # the digits have no sex column; a new epochs value would retrain every model after split
    edit_params(repo, evaluate={"groups": ["sex"]}, train={"epochs": 3})
    proc = sh(repo, "dvc", "repro", check=False)
    assert proc.returncode != 0
    assert re.search(r"^split: error: evaluate\.groups: column 'sex' not in the index \(after "
                     r"bias\); columns: \['row', .*'s'\]$", proc.stderr, re.M), proc.stderr
    assert ran(proc) == {"params", "split"}  # no weights, no train
    assert model.read_bytes() == before


def test_a_valid_change_of_a_column_key_reruns_its_check_but_trains_nothing(repo):
    edit_params(repo, evaluate={"groups": ["s", "digit"]})
    assert ran(sh(repo, "dvc", "repro")) == {
        "params", "split", "evaluate", "explain@none", "explain@reweighing", "report"}
    assert "digit.disparate_impact" in pd.read_csv(repo / "metrics/grid.csv").columns


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("bias", {"p0": 1.5}, r"bias\.p0 = 1\.5 is not allowed; expected a probability in \[0, 1"),
        ("bias", {"kind": "stripes"}, r"bias\.kind = 'stripes'.*one of none, noise_channel"),
        ("bias", {"colour": 1}, r"bias\.colour = 1 is not allowed; expected a known key"),
    ],
)
def test_bad_params_stop_the_stage_with_a_clear_message(repo, section, values, message):
    (repo / "data/bias.parquet").unlink(missing_ok=True)
    edit_params(repo, **{section: values})
    proc = sh(repo, "python", "-m", "stages.bias", "--index", "data/prepared/index.parquet",
              "--out", "data/bias.parquet", check=False)
    assert proc.returncode == 1
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (repo / "data/bias.parquet").exists()  # no partial artifact
    assert not list((repo / "data").glob(".bias.parquet*"))  # no stray temp file


def test_unknown_scheme_fails_the_repro_naming_it(repo):
    edit_params(repo, weights={"schemes": ["none", "magic"]})
    proc = sh(repo, "dvc", "repro", "weights@magic", check=False)
    assert proc.returncode != 0
    assert "weights.schemes = 'magic' is not allowed" in proc.stdout + proc.stderr


def test_every_scheme_and_method_runs_in_the_pipeline(repo):
    from biaslab.config import METHODS, SCHEMES

    # digit is a numeric metadata column of the digits source: usable by scheme `column`
    edit_params(repo, weights={"schemes": list(SCHEMES), "column": "digit"},
                postprocess={"methods": list(METHODS)})
    stages = ran(sh(repo, "dvc", "repro", "--glob", "weights@*"))
    # weights.column is a param of every weights stage: all run (seconds); their outputs
    # are byte-identical where nothing changed, so no model retrains for it; split checks
    # that the column exists (its output unchanged)
    assert stages == {"params", "split", *(f"weights@{s}" for s in SCHEMES)}
    for scheme in SCHEMES:
        table = pd.read_parquet(repo / f"data/weights/{scheme}.parquet")
        train = table["weight"].dropna()
        assert len(train) > 0 and abs(train.mean() - 1) < 1e-9, scheme
    sh(repo, "dvc", "repro", "-s", "postprocess@none-0")
    decisions = pd.read_parquet(repo / "data/decisions/none/seed0.parquet")
    assert set(decisions["method"]) == set(METHODS)
