"""`python -m biaslab train|predict` on a generated folder of images with a table."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biaslab.cli.commands import main, parser
from biaslab.config import BiasConfig, TrainConfig
from biaslab.data.bias import BiasSpec
from biaslab.model.checkpoint import load_bias


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
    args = parser().parse_args(["train", "--datadir", "d", "--csv", "t.csv", "--logdir", "l"])
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
