"""One model for several findings: K outputs, the per-finding loss and its positive weights,
the checkpoint's findings, long predictions; and `dvc repro predict` multi-label end to end on
generated images (csv source, 3 label columns)."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from biaslab.config import TrainConfig
from biaslab.data.bias import BiasSpec
from biaslab.model.architectures import build_model
from biaslab.model.batches import TrainData
from biaslab.model.checkpoint import load_checkpoint, load_findings, save_checkpoint
from biaslab.model.multilabel import per_finding_loss, positive_weights
from biaslab.model.predict import predict_scores
from biaslab.model.train import fit, per_sample_loss
from tests.conftest import copy_repo, edit_params, sh

FINDINGS = ("Edema", "Mass", "Hernia")
NONE = BiasSpec(kind="none")


def _data(n=96, size=12, seed=0):
    """Pixels whose three quadrants show three findings, and their (N, 3) labels."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < [0.5, 0.4, 0.2]).astype(np.int8)
    pixels = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    h = size // 2
    for k, (r, c) in enumerate([(0, 0), (0, h), (h, 0)]):
        pixels[labels[:, k] == 1, r:r + h, c:c + h] += 150
    return pixels, labels


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_k_outputs_give_b_by_k_logits_and_one_output_b(name):
    x = torch.zeros(2, 1, 32, 32)
    assert build_model(name, 1, 4, outputs=3).eval()(x).shape == (2, 3)
    assert build_model(name, 1, 4).eval()(x).shape == (2,)


def test_positive_weights_none_balanced_and_a_mapping():
    labels = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]])
    assert positive_weights("none", FINDINGS, labels).tolist() == [1, 1, 1]
    # 3 negatives per positive; 3 per 1; no negative: nothing to balance
    assert positive_weights("balanced", FINDINGS, labels).tolist() == [3, 3, 1]
    assert positive_weights({"Hernia": 50}, FINDINGS, labels).tolist() == [1, 1, 50]
    with pytest.raises(ValueError, match=r"train.pos_weight names \['Hernai'\], not among "
                                         r"the findings of the run: Edema, Mass, Hernia"):
        positive_weights({"Hernai": 50}, FINDINGS, labels)


def test_the_per_finding_loss_is_bce_with_logits_pos_weight_averaged_over_findings():
    logits, y = torch.randn(5, 3), torch.randint(0, 2, (5, 3)).float()
    w = np.array([1.0, 2.0, 7.0])
    loss = per_finding_loss(per_sample_loss(TrainConfig()), w)(logits, y)
    expected = torch.nn.BCEWithLogitsLoss(reduction="none", pos_weight=torch.tensor(
        w, dtype=torch.float32))(logits, y).mean(dim=1)
    assert loss.shape == (5,) and torch.allclose(loss, expected)


def _split_table(labels):
    n = len(labels)
    split = np.where(np.arange(n) % 4 == 0, "val", "train")
    table = pd.DataFrame({"row": np.arange(n), "label": labels.max(axis=1), "split": split})
    for k, f in enumerate(FINDINGS):
        table[f"label_{f}"] = labels[:, k]
    return table


def test_fit_learns_each_finding_and_the_checkpoint_records_them(tmp_path):
    pixels, labels = _data()
    table = _split_table(labels)
    train = TrainData.from_table(table, "train", findings=FINDINGS)
    val = TrainData.from_table(table, "val", findings=FINDINGS)
    assert train.labels.shape == (72, 3)
    cfg = TrainConfig(epochs=8, width=4, batch_size=16, lr=0.01, device="cpu",
                      pos_weight="balanced")
    fitted = fit(pixels, train, val, cfg, bias=NONE)
    assert fitted.degenerate is None
    assert fitted.curves["val_loss"].iloc[-1] < fitted.curves["val_loss"].iloc[0]
    save_checkpoint(fitted.model, cfg, 1, tmp_path / "model.pt", bias=NONE, findings=FINDINGS)
    model, config = load_checkpoint(tmp_path / "model.pt")
    assert load_findings(tmp_path / "model.pt") == list(FINDINGS)
    assert config.pos_weight == "balanced"
    scores = predict_scores(model, pixels, table[table["split"] == "val"], NONE,
                            findings=list(FINDINGS))
    assert scores.columns.tolist() == ["row", "finding", "split", "score"]
    assert scores["finding"].tolist()[:6] == [*FINDINGS, *FINDINGS]
    assert scores["row"].tolist()[:6] == [0, 0, 0, 4, 4, 4]
    # each output scores its own finding: positives above negatives, finding by finding
    truth = labels[scores["row"].to_numpy(), np.tile(np.arange(3), len(scores) // 3)]
    for f in FINDINGS:
        mine = (scores["finding"] == f).to_numpy()
        assert scores["score"][mine & (truth == 1)].mean() > scores["score"][
            mine & (truth == 0)].mean() + 0.2


def test_one_finding_is_one_output_with_its_own_column(tmp_path):
    pixels, labels = _data(48)
    table = _split_table(labels)
    train = TrainData.from_table(table, "train", findings=FINDINGS[:1])
    val = TrainData.from_table(table, "val", findings=FINDINGS[:1])
    assert train.labels.shape == (36, 1)
    fitted = fit(pixels, train, val, TrainConfig(epochs=2, width=4, device="cpu"), bias=NONE)
    assert fitted.model.outputs == 1 and np.isfinite(fitted.curves["val_loss"]).all()
    scores = predict_scores(fitted.model, pixels, table[table["split"] == "val"], NONE,
                            findings=list(FINDINGS[:1]))
    assert scores["finding"].unique().tolist() == ["Edema"] and len(scores) == 12


def test_a_single_label_checkpoint_records_no_findings_and_no_default_pos_weight(tmp_path):
    cfg = TrainConfig(width=4)
    save_checkpoint(build_model("small_cnn", 1, 4), cfg, 1, tmp_path / "m.pt", bias=NONE)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert "findings" not in raw and "pos_weight" not in raw["config"]
    assert load_findings(tmp_path / "m.pt") == []
    model, config = load_checkpoint(tmp_path / "m.pt")
    assert config == cfg and model.outputs == 1


def test_scoring_other_findings_than_the_models_is_an_error():
    pixels, labels = _data(8)
    table = _split_table(labels)
    with pytest.raises(ValueError, match=r"the model has 3 output\(s\) but 1 finding"):
        predict_scores(build_model("small_cnn", 1, 4, outputs=3), pixels, table, NONE)


def test_pos_weight_on_a_single_label_run_is_an_error():
    pixels, labels = _data(16)
    table = _split_table(labels)
    data = TrainData.from_table(table, "train")
    with pytest.raises(ValueError, match=r"train.pos_weight = 'balanced' weighs the findings"):
        fit(pixels, data, data, TrainConfig(epochs=1, width=4, pos_weight="balanced",
                                            device="cpu"), bias=NONE)


# ---------------------------------------------------------------- dvc repro, end to end
def _images(root, n=80, size=20, seed=1):
    """n images under root with a table of 3 finding columns (quadrants), patients, sex."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < 0.4).astype(int)
    h = size // 2
    for i in range(n):
        pixels = rng.integers(0, 60, (size, size))
        for k, (r, c) in enumerate([(0, 0), (0, h), (h, 0)]):
            pixels[r:r + h, c:c + h] += 150 * labels[i, k]
        Image.fromarray(pixels.astype(np.uint8)).save(root / f"x{i}.png")
    table = pd.DataFrame({"path": [f"x{i}.png" for i in range(n)],
                          "patient_id": [f"p{i // 2}" for i in range(n)],
                          "sex": np.where(np.arange(n) % 3 == 0, "F", "M")})
    for k, f in enumerate(FINDINGS):
        table[f] = labels[:, k]
    table.to_csv(root / "metadata.csv", index=False)
    return table


@pytest.mark.slow
def test_dvc_repro_predict_multi_label_writes_long_predictions(tiny_repo, tmp_path):
    repo = copy_repo(tiny_repo, tmp_path / "repo")
    data = tmp_path / "images"
    data.mkdir()
    table = _images(data)
    edit_params(repo, data={"source": "csv", "root": str(data), "findings": list(FINDINGS)},
                split={"fractions": {"train": 0.5, "val": 0.25, "test": 0.25},
                       "stratify": ["label"]},
                train={"pos_weight": {"Hernia": 2.0}})
    sh(repo, "dvc", "repro", "predict")
    index = pd.read_parquet(repo / "data/prepared/index.parquet")
    assert [c for c in index.columns if c.startswith("label")] == [
        "label", *(f"label_{f}" for f in FINDINGS)]
    by_path = table.set_index("path")
    assert (index["label"].to_numpy() == by_path.loc[index["source"], list(FINDINGS)]
            .max(axis=1).to_numpy()).all()
    split = pd.read_parquet(repo / "data/split.parquet")
    scored = split[split["split"].isin(["val", "test"])]
    for scheme in ("none", "reweighing"):
        model = repo / f"models/{scheme}/seed0/model.pt"
        assert load_findings(model) == list(FINDINGS)
        pred = pd.read_parquet(repo / f"data/predictions/{scheme}/seed0.parquet")
        assert pred.columns.tolist() == ["row", "finding", "split", "score", "score_s0",
                                         "score_s1"]
        assert len(pred) == 3 * len(scored)
        assert pred["finding"].tolist() == list(FINDINGS) * len(scored)
        assert pred["row"].tolist() == np.repeat(scored["row"].to_numpy(), 3).tolist()
        merged = pred.merge(split, on="row", suffixes=("", "_split"))
        assert (merged["split"] == merged["split_split"]).all()
        assert pred[["score", "score_s0", "score_s1"]].stack().between(0, 1).all()
    # the whole pipeline on: per-finding thresholds and figures, the explain stage on the "any
    # finding" decision, and the report's Findings section
    sh(repo, "dvc", "repro")
    grid = pd.read_csv(repo / "metrics/grid.csv")
    assert grid.columns[0] == "finding" and set(FINDINGS) <= set(grid["finding"])
    assert (repo / "metrics/explain/none/robustness.csv").is_file()
    page = (repo / "reports/index.html").read_text()
    assert 'id="findings"' in page and "underdiagnosis" in page.lower()
