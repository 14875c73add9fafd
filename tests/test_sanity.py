"""Scientific sanity on tiny real data: the injected shortcut is learnt exactly when it exists.

With S a copy of the label (p0=0, p1=1) the model leans on S: forcing S flips its decisions and
a test set where S is independent of the label exposes it. With S independent of the label
(p0=p1=0.5) the model ignores S.
"""

import numpy as np
import pytest
import torch

from biaslab.config import TrainConfig
from biaslab.data.bias import BiasSpec, draw_s
from biaslab.data.images import prepare_arrays
from biaslab.data.sources import load_digits_source
from biaslab.data.split import stratified_split
from biaslab.fairness.evaluate import shifted_view
from biaslab.model.batches import TrainData
from biaslab.model.checkpoint import load_checkpoint, save_checkpoint
from biaslab.model.predict import predict_scores
from biaslab.model.train import fit

CONFIG = TrainConfig(epochs=5, batch_size=32, lr=0.002, width=8)


@pytest.fixture(scope="module")
def digits():
    index, images = load_digits_source([1], [7])
    index.insert(0, "row", np.arange(len(index)))
    return index, prepare_arrays(images, 16)


def _train(digits, p0, p1, config=CONFIG):
    index, pixels = digits
    table = index.assign(s=draw_s(index["label"].to_numpy(), p0, p1, seed=0))
    split = stratified_split(table, {"train": 0.6, "val": 0.2, "test": 0.2}, ["label", "s"], 0)
    table = table.merge(split, on="row")

    def part(name):
        rows = table[table["split"] == name]
        return TrainData(rows["row"].to_numpy(), rows["label"].to_numpy(), rows["s"].to_numpy())

    model, curves, _ = fit(pixels, part("train"), part("val"), config, log=lambda msg: None)
    return model, curves, table[table["split"] == "test"]


def _audit(digits, model, test):
    _, pixels = digits
    scores = predict_scores(model, pixels, test, bias=BiasSpec())
    view = test.assign(decision=(scores["score"] >= 0.5).astype(int).to_numpy(),
                       decision_s0=(scores["score_s0"] >= 0.5).astype(int).to_numpy(),
                       decision_s1=(scores["score_s1"] >= 0.5).astype(int).to_numpy())
    shifted = shifted_view(view, shift_p=0.5, seed=0)
    return {
        "accuracy": np.mean(view["decision"] == view["label"]),
        "flip_rate": np.mean(view["decision_s0"] != view["decision_s1"]),
        "shifted_accuracy": np.mean(shifted["decision"] == shifted["label"]),
    }


def test_model_leans_on_a_perfect_shortcut(digits):
    model, _, test = _train(digits, p0=0.0, p1=1.0)
    m = _audit(digits, model, test)
    assert m["accuracy"] > 0.9
    assert m["flip_rate"] > 0.6
    assert m["shifted_accuracy"] < m["accuracy"] - 0.25


def test_model_ignores_an_uninformative_bias(digits):
    model, _, test = _train(digits, p0=0.5, p1=0.5)
    m = _audit(digits, model, test)
    assert m["accuracy"] > 0.85
    assert m["flip_rate"] < 0.2
    assert abs(m["shifted_accuracy"] - m["accuracy"]) < 0.1


def test_training_is_deterministic_and_checkpoint_round_trips(digits, tmp_path):
    config = TrainConfig(epochs=2, batch_size=32, width=4)
    model_a, curves_a, test = _train(digits, 0.1, 0.9, config)
    model_b, curves_b, _ = _train(digits, 0.1, 0.9, config)
    np.testing.assert_array_equal(curves_a["val_loss"], curves_b["val_loss"])
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    save_checkpoint(model_a, config, in_channels=2, path=tmp_path / "model.pt")
    loaded, loaded_config = load_checkpoint(tmp_path / "model.pt")
    assert loaded_config == config
    _, pixels = digits
    np.testing.assert_allclose(predict_scores(model_a, pixels, test, BiasSpec())["score"],
                               predict_scores(loaded, pixels, test, BiasSpec())["score"])
    assert list(curves_a.columns) == ["epoch", "lr", "train_loss", "train_acc", "val_loss",
                                      "val_acc", "val_bacc", "val_acc_g0", "val_acc_g1",
                                      "img_per_s"]
