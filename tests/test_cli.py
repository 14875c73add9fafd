"""The `biaslab` command: its help and examples, the console script, the one-line errors, and
`biaslab train|predict` on a generated folder of images with a table (sweep and recover run
for real in test_sweep.py, test_ray_sweep.py and test_recovery.py)."""

import importlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biaslab.cli.main import COMMANDS, main, parser
from biaslab.config import BiasConfig, TrainConfig
from biaslab.data.bias import BiasSpec
from biaslab.model.checkpoint import load_bias

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "biaslab"  # installed by `make env` (uv sync)


# ------------------------------------------------------------------ the command and its help

def test_help_lists_each_command_with_one_line(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith("usage: biaslab [-h] COMMAND ...")
    listed = re.findall(r"^    (\w+) +(.+)$", out, flags=re.MULTILINE)
    assert [name for name, _ in listed] == ["train", "predict", "sweep", "recover", "audit"]
    for name, line in listed:  # a line too long would be wrapped onto a second one
        assert COMMANDS[name][1] == line


def examples(help_text: str) -> list[list[str]]:
    """The `biaslab ...` command lines of the Examples section, continuations joined."""
    section = help_text.split("\nExamples:\n", 1)[1].replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in section.splitlines()]
    return [words[1:] for words in lines if words and words[0] == "biaslab"]


@pytest.mark.parametrize("command", ["train", "predict", "sweep", "recover", "audit"])
def test_each_command_has_a_description_and_examples_that_parse(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith(f"usage: biaslab {command} [-h]")
    module = importlib.import_module(COMMANDS[command][0])
    assert module.__doc__.splitlines()[0] in out
    found = examples(out)
    assert len(found) >= 2 and all(words[0] == command for words in found)
    for words in found:  # an example that no longer parses fails here, not in a user's hands
        assert parser(command).parse_args(words).command == command


def test_the_help_reads_none_of_the_commands():
    """`biaslab --help` imports no command's module (nor pandas nor torch): it answers at
    once, and a command that cannot be imported leaves the others usable."""
    code = ("import sys; from biaslab.cli.main import parser; parser().format_help(); "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('biaslab', 'pandas', 'torch'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.split() == ["biaslab", "biaslab.cli", "biaslab.cli.main"]


@pytest.mark.parametrize("command", [[str(SCRIPT)], [sys.executable, "-m", "biaslab"]],
                         ids=["console-script", "python-m"])
def test_the_console_script_and_python_m_run(command, tmp_path):
    proc = subprocess.run([*command, "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.findall(r"^    (\w+) ", proc.stdout, flags=re.MULTILINE) == list(COMMANDS)


@pytest.mark.slow
def test_a_bad_sweep_setting_is_one_line_without_a_traceback(tmp_path):
    for name in ("params.yaml", "dvc.yaml"):  # no git, no DVC: nothing could be queued
        shutil.copy(ROOT / name, tmp_path / name)
    proc = subprocess.run([str(SCRIPT), "sweep", "--param", "bias.p3", "--values", "0.1"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("biaslab sweep: error: +bias.p3=0.1 train.seeds=[0]: params.yaml: "
                           "bias.p3 = 0.1 is not allowed; expected a known key of bias: kind, "
                           "p0, p1, seed, patch_size, patch_position, patch_value\n")


def test_an_unknown_command_is_argparses_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["explain"])  # not a command (yet): no stub answers it
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("usage: biaslab [-h] COMMAND ...\n")
    assert ("invalid choice: 'explain' (choose from 'train', 'predict', 'sweep', 'recover', "
            "'audit')") in err


def test_ctrl_c_ends_a_command_with_one_line(monkeypatch, capsys):
    from biaslab.cli import recover

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(recover, "run", interrupted)
    assert main(["recover"]) == 130
    assert capsys.readouterr().err == "biaslab recover: interrupted\n"


# ------------------------------------------------------------------ train and predict

@pytest.fixture
def datadir(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        label = i % 2
        pixels = rng.integers(0, 80, (20, 24), dtype=np.uint8) + 150 * label  # bright = 1
        Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / f"img{i}.png")
        rows.append({"file": f"img{i}.png", "y": label, "w": 1.0 + label,
                     "patient_id": f"p{i // 2}"})
    pd.DataFrame(rows).to_csv(tmp_path / "table.csv", index=False)
    return tmp_path


def common(datadir):
    return ["--datadir", str(datadir), "--csv", "table.csv", "--path-col", "file",
            "--label-col", "y", "--size", "16", "--workers", "1"]


def test_train_then_predict_from_the_checkpoint(datadir, tmp_path):
    logdir = tmp_path / "run"
    assert main(["train", *common(datadir), "--weights-col", "w", "--logdir", str(logdir),
                 "--epochs", "3", "--lr", "0.01"]) == 0
    assert {"model.pt", "curves.csv", "split.csv"} <= {p.name for p in logdir.iterdir()}
    split = pd.read_csv(logdir / "split.csv")
    assert set(split["split"]) == {"train", "val"} and len(split) == 40
    out = tmp_path / "scores.csv"
    assert main(["predict", *common(datadir), "--ckpt", str(logdir / "model.pt"),
                 "--csv-out", str(out)]) == 0
    scores = pd.read_csv(out)
    assert len(scores) == 40 and scores["score"].between(0, 1).all()
    # bright images are the positives: a trained model ranks them higher
    assert scores.groupby("label")["score"].mean().diff().iloc[-1] > 0


def test_predict_without_a_checkpoint_fails_clearly(datadir, tmp_path, capsys):
    assert main(["predict", *common(datadir), "--ckpt", str(tmp_path / "none.pt"),
                 "--csv-out", str(tmp_path / "x.csv")]) == 1
    assert "--ckpt:" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_unknown_weights_column_names_it(datadir, tmp_path, capsys):
    assert main(["train", *common(datadir), "--weights-col", "nope", "--logdir",
                 str(tmp_path / "run")]) == 1
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["noise_channel",
                                  pytest.param("patch", marks=pytest.mark.slow)])
def test_a_model_trained_with_s_needs_s_to_predict(datadir, tmp_path, capsys, kind):
    table = pd.read_csv(datadir / "table.csv")
    table.assign(s=table["y"]).to_csv(datadir / "with_s.csv", index=False)
    table.assign(s=0).to_csv(datadir / "s_off.csv", index=False)
    logdir = tmp_path / "run"
    args = [a if a != "table.csv" else "with_s.csv" for a in common(datadir)]
    assert main(["train", *args, "--logdir", str(logdir), "--epochs", "1", "--bias-kind", kind,
                 "--bias-patch-size", "3", "--bias-seed", "4"]) == 0
    bias = load_bias(logdir / "model.pt")  # how S was shown, recorded for predict
    assert bias.as_dict() == BiasSpec(kind=kind, seed=4, patch_size=3).as_dict()
    assert main(["predict", *common(datadir), "--ckpt", str(logdir / "model.pt"),
                 "--csv-out", str(tmp_path / "x.csv")]) == 1
    assert f"trained with S shown as {kind}; the table needs an 's' column" in (
        capsys.readouterr().err)
    assert main(["predict", *args, "--ckpt", str(logdir / "model.pt"),
                 "--csv-out", str(tmp_path / "x.csv")]) == 0
    off = [a if a != "table.csv" else "s_off.csv" for a in common(datadir)]
    assert main(["predict", *off, "--ckpt", str(logdir / "model.pt"),
                 "--csv-out", str(tmp_path / "off.csv")]) == 0
    # S is shown to the model: the positives' scores move when it is switched off
    scores, scores_off = pd.read_csv(tmp_path / "x.csv"), pd.read_csv(tmp_path / "off.csv")
    positive = scores["label"] == 1
    assert (scores.loc[positive, "score"] != scores_off.loc[positive, "score"]).all()
    np.testing.assert_array_equal(scores.loc[~positive, "score"],
                                  scores_off.loc[~positive, "score"])


def test_defaults_are_the_pipelines():
    args = parser("train").parse_args(["train", "--datadir", "d", "--csv", "t.csv",
                                       "--logdir", "l"])
    train = TrainConfig()
    assert (args.model, args.epochs, args.batch_size, args.lr, args.seed, args.device) == (
        train.model, train.epochs, train.batch_size, train.lr, train.seeds[0], train.device)
    bias = BiasConfig()
    assert (args.bias_kind, args.bias_seed, args.bias_patch_size, args.bias_patch_position,
            args.bias_patch_value) == (bias.kind, bias.seed, bias.patch_size,
                                       bias.patch_position, bias.patch_value)


def test_a_bad_option_is_named_as_the_option_not_as_a_params_key(tmp_path, capsys):
    code = main(["train", "--datadir", str(tmp_path), "--csv", "x.csv", "--logdir",
                 str(tmp_path / "run"), "--batch-size", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == ("biaslab train: error: --batch-size = 0 is not allowed; expected an integer "
                   ">= 1\n")


@pytest.mark.parametrize(("options", "said"), [
    (["--bias-kind", "stripe"], "--bias-kind = 'stripe' is not allowed; expected one of none, "
     "noise_channel, patch"),
    (["--bias-patch-value", "2"], "--bias-patch-value = 2.0 is not allowed; expected a number in "
     "[-1, 1]"),
    (["--bias-kind", "patch", "--size", "16", "--bias-patch-size", "15"],
     "--bias-patch-size = 15 does not fit the 16x16 images; expected at most 14 (a 1-pixel "
     "margin each side), or a larger --size"),
])
def test_a_bad_bias_option_is_named_before_any_image_is_read(tmp_path, capsys, options, said):
    code = main(["train", "--datadir", str(tmp_path), "--csv", "x.csv", "--logdir",
                 str(tmp_path / "run"), *options])
    assert code == 1 and capsys.readouterr().err == f"biaslab train: error: {said}\n"


def test_an_s_column_other_than_0_1_is_named(datadir, tmp_path, capsys):
    table = pd.read_csv(datadir / "table.csv")
    table.assign(s=["yes", "0"] * 20).to_csv(datadir / "bad_s.csv", index=False)
    args = [a if a != "table.csv" else "bad_s.csv" for a in common(datadir)]
    assert main(["train", *args, "--logdir", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err == ("biaslab train: error: bad_s.csv: column s: expected "
                                       "only 0 and 1, got yes (20 row(s))\n")
