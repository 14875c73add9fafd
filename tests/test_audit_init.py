"""`biaslab audit --init DIR`: the audit as a DVC project over the user's table.

The project's params.yaml reads back as the settings it was written from; its stages, run by
`dvc repro`, give the files one `biaslab audit` gives; a change of report.criteria reruns the
report alone and `dvc exp run -S evaluate.n_boot=...` evaluate and report (said by DVC's own
`dvc status` and `dvc repro` output); the files in the folder are never overwritten unasked.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from ruamel.yaml import YAML

from biaslab.audit.project import SECTIONS, dvc_yaml, flow, params_text
from biaslab.audit.store import flatten, nest
from biaslab.cli.main import main
from biaslab.config import ReportConfig, parse_params
from tests.test_audit_command import FAST, predictions

BIN = Path(sys.executable).parent
TABLE = ["--groups", "sex,age_group", "--split", "split", "--patient", "patient", "--id",
         "image", "--model", "model", "--seeds-of", "r=s0,s1"]


def init(tmp_path, *options, folder="project", table=None):
    (table if table is not None else predictions(models=("s0", "s1"), bias=2.0)).to_csv(
        tmp_path / "preds.csv", index=False)
    return main(["audit", "--init", str(tmp_path / folder), "--predictions",
                 str(tmp_path / "preds.csv"), *FAST, *options])


def dvc(folder, *args):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run([str(BIN / "dvc"), *args], cwd=folder, capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def ran(output: str) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` ran, in order."""
    return [line.split("'")[1] for line in output.splitlines()
            if line.startswith("Running stage '")]


def set_param(folder: Path, section: str, key: str, value) -> None:
    yaml = YAML()
    raw = yaml.load(folder / "params.yaml")
    raw[section][key] = value
    yaml.dump(raw, folder / "params.yaml")


# ------------------------------------------------------------------ the files it writes

def test_params_yaml_reads_back_as_the_settings_it_was_written_from():
    criteria = [{"figure": "equal_opportunity_difference", "max": 0.1, "abs": True,
                 "attributes": ["sex"], "name": "eod: sex"},
                {"figure": "excess_disparate_impact", "min": 0.8, "require_interval": True}]
    params = parse_params({"evaluate": {"groups": ["sex", "age_group"], "n_boot": 7,
                                        "pareto_gap": "equal_opportunity_difference"},
                           "postprocess": {"groups": ["sex"], "methods": ["fixed", "youden"]},
                           "report": {"criteria": criteria, "min_class_size": 3},
                           "audit": {"attributes": ["sex", "age_group"], "level": 0.9}})
    text = params_text(params, "preds.csv")
    raw = YAML(typ="safe").load(text)
    assert list(raw) == list(SECTIONS)
    assert "attributes" not in raw["audit"]  # the audit tabulates evaluate.groups
    again = parse_params({**raw, "audit": {**raw["audit"], "attributes": ["sex", "age_group"]}})
    for section in SECTIONS:
        assert getattr(again, section) == getattr(params, section), section
    # every key is said above it, with its description
    described = ReportConfig.model_fields["min_class_size"].description.split()[0]
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  min_class_size:"))
    assert lines[at - 2].strip().startswith("# " + described) or described in lines[at - 1]


@pytest.mark.parametrize("value", ["yes", "0.5", "a: b", "", " x", "null", "it's", "[s]",
                                   "sex", "a#b", "équité"])
def test_flow_text_reads_back_as_the_same_string(value):
    assert YAML(typ="safe").load(f"k: {flow(value)}")["k"] == value
    assert YAML(typ="safe").load(f"k: {flow([value, 1.5, None, True])}")["k"] == [
        value, 1.5, None, True]


def test_dvc_yaml_runs_the_steps_with_the_table_options():
    text = dvc_yaml("my preds.csv", ["--label", "y", "--score", "p", "--logits"])
    stages = YAML(typ="safe").load(text)["stages"]
    assert list(stages) == ["postprocess", "evaluate", "report"]
    assert stages["postprocess"]["cmd"].startswith(
        "biaslab audit --step postprocess --predictions 'my preds.csv' --params params.yaml "
        "--out . --label y --score p --logits")
    assert stages["postprocess"]["deps"] == ["my preds.csv"]
    assert "report.criteria" not in str(stages["evaluate"]["params"])
    assert stages["report"]["params"][0] == "report"


def test_flatten_and_nest_keep_the_order_of_recipes_and_models():
    nested = {"b": {"s1": pd.DataFrame({"row": [2, 0]}), "s0": pd.DataFrame({"row": [1, 2]})},
              "a": {"m": pd.DataFrame({"row": [0]})}}
    back = nest(flatten(nested))
    assert list(back) == ["b", "a"] and list(back["b"]) == ["s1", "s0"]
    for recipe, models in nested.items():
        for model, part in models.items():
            pd.testing.assert_frame_equal(back[recipe][model], part)


# ------------------------------------------------------------------ --init

def test_init_writes_the_project_and_refuses_to_overwrite_it(tmp_path, capsys):
    assert init(tmp_path, *TABLE) == 0
    project = tmp_path / "project"
    assert (project / ".git").is_dir() and (project / ".dvc").is_dir()
    out = capsys.readouterr().out
    assert out.startswith(f"audit: a DVC project in {project} (dvc.yaml, params.yaml) auditing "
                          "2 model(s)")
    params = YAML(typ="safe").load(project / "params.yaml")
    assert params["evaluate"]["groups"] == ["sex", "age_group"]
    assert params["evaluate"]["n_perm"] == 99  # the options given are the project's settings
    (project / "params.yaml").write_text("mine\n")
    assert init(tmp_path, *TABLE) == 1
    err = capsys.readouterr().err
    assert err == (f"biaslab audit: error: --init {project}: {project / 'dvc.yaml'}, "
                   f"{project / 'params.yaml'} already exist(s); add --force to overwrite, or "
                   "give another folder\n")
    assert (project / "params.yaml").read_text() == "mine\n"
    assert init(tmp_path, *TABLE, "--force") == 0
    assert "groups: [sex, age_group]" in (project / "params.yaml").read_text()


def test_a_table_inside_the_project_is_named_relative_to_it(tmp_path):
    (tmp_path / "project").mkdir()
    table = predictions()
    table.to_csv(tmp_path / "project" / "preds.csv", index=False)
    assert main(["audit", "--init", str(tmp_path / "project"), "--predictions",
                 str(tmp_path / "project" / "preds.csv"), "--groups", "sex"]) == 0
    stages = YAML(typ="safe").load(tmp_path / "project" / "dvc.yaml")["stages"]
    assert stages["postprocess"]["deps"] == ["preds.csv"]


def test_init_within_a_git_repository_makes_a_dvc_subproject(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert init(tmp_path, *TABLE, folder="audits/one") == 0
    assert (tmp_path / "audits/one/.dvc").is_dir()
    assert not (tmp_path / "audits/one/.git").exists()  # the enclosing repository holds it


def test_a_bad_table_or_setting_stops_init_before_any_file(tmp_path, capsys):
    table = predictions(models=("s0", "s1"))
    assert init(tmp_path, *TABLE, table=table.assign(label=2)) == 1
    assert "column 'label' (--label)" in capsys.readouterr().err
    assert init(tmp_path, *TABLE, "--level", "2") == 1
    assert "--level = 2.0 is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "project").exists()


@pytest.mark.parametrize(("options", "said"), [
    ([], "give --out DIR, the folder of the results"),
    (["--out", "out", "--force"], "--force overwrites the files of --init DIR"),
    (["--step", "evaluate"], "--step evaluate: give --out, the project's root"),
    (["--init", "p", "--step", "report"], "--init writes a project and --step runs one"),
    (["--init", "p", "--model-file", "m.pt"], "--init and --step audit a predictions table"),
])
def test_the_audit_needs_out_or_init_and_their_options_go_together(tmp_path, capsys, options,
                                                                   said):
    predictions().to_csv(tmp_path / "preds.csv", index=False)
    assert main(["audit", "--predictions", str(tmp_path / "preds.csv"), "--groups", "sex",
                 *options]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"biaslab audit: error: {said}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "p").exists()


# ------------------------------------------------------------------ dvc repro, end to end

@pytest.mark.slow
def test_dvc_repro_gives_the_audit_and_reruns_only_what_a_change_needs(tmp_path):
    assert init(tmp_path, *TABLE) == 0
    project = tmp_path / "project"
    assert ran(dvc(project, "repro")) == ["postprocess", "evaluate", "report"]
    # the same files as one `biaslab audit` of the table with the same settings
    assert main(["audit", "--predictions", str(tmp_path / "preds.csv"), "--out",
                 str(tmp_path / "once"), *FAST, *TABLE]) == 0
    for name in ("grid.csv", "groups.csv", "seeds.csv", "fairness.json", "verdict.json",
                 "thresholds.json"):
        assert (project / "metrics" / name).read_bytes() == (tmp_path / "once" / name
                                                            ).read_bytes(), name
    assert "Data and pipelines are up to date" in dvc(project, "status")
    # a stricter criterion: the report alone
    set_param(project, "report", "criteria", [{"figure": "balanced_accuracy", "min": 0.99}])
    status = dvc(project, "status")
    assert "report:" in status and "evaluate:" not in status and "postprocess:" not in status
    assert ran(dvc(project, "repro")) == ["report"]
    verdict = json.loads((project / "metrics/verdict.json").read_text())
    assert verdict["verdict"] == "failed"
    # an experiment with more resamples: evaluate and report
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
                    "audit"], cwd=project, check=True)
    assert ran(dvc(project, "exp", "run", "-S", "evaluate.n_boot=60")) == ["evaluate",
                                                                            "report"]
    assert YAML(typ="safe").load(project / "params.yaml")["evaluate"]["n_boot"] == 60
