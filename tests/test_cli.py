"""`python -m biaslab train|predict` on a generated folder of images with a table."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biaslab.cli.commands import main, parser
from biaslab.config import BiasConfig, TrainConfig


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


def test_a_model_trained_with_s_needs_s_to_predict(datadir, tmp_path, capsys):
    table = pd.read_csv(datadir / "table.csv")
    table.assign(s=table["y"]).to_csv(datadir / "with_s.csv", index=False)
    logdir = tmp_path / "run"
    args = [a if a != "table.csv" else "with_s.csv" for a in common(datadir)]
    assert main(["train", *args, "--logdir", str(logdir), "--epochs", "1"]) == 0
    assert main(["predict", *common(datadir), "--ckpt", str(logdir / "model.pt"),
                 "--csv-out", str(tmp_path / "x.csv")]) == 1
    assert "trained with the bias channel; the table needs an 's' column" in (
        capsys.readouterr().err)
    assert main(["predict", *args, "--ckpt", str(logdir / "model.pt"),
                 "--csv-out", str(tmp_path / "x.csv")]) == 0


def test_defaults_are_the_pipelines():
    args = parser().parse_args(["train", "--datadir", "d", "--csv", "t.csv", "--logdir", "l"])
    train = TrainConfig()
    assert (args.model, args.epochs, args.batch_size, args.lr, args.seed, args.device) == (
        train.model, train.epochs, train.batch_size, train.lr, train.seed, train.device)
    assert args.bias_seed == BiasConfig().seed


def test_a_bad_option_is_named_as_the_option_not_as_a_params_key(tmp_path, capsys):
    code = main(["train", "--datadir", str(tmp_path), "--csv", "x.csv", "--logdir",
                 str(tmp_path / "run"), "--batch-size", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == ("biaslab train: error: --batch-size = 0 is not allowed; expected an integer "
                   ">= 1\n")
