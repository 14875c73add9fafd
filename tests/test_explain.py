"""The explain stage: the seeded selection, attribution maps and the bias share, robustness."""

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from biaslab.config import MODELS, ExplainConfig
from biaslab.data.bias import BiasSpec
from biaslab.explain import attribution as attr
from biaslab.explain import robustness as rob
from biaslab.explain.attribution import region_tiles
from biaslab.explain.select import (
    OUTCOMES,
    empty_cells,
    empty_note,
    outcomes,
    row_keys,
    select_cells,
    share_sample,
)
from biaslab.model.architectures import build_model
from tests.conftest import copy_repo, sh

# ------------------------------------------------------------------ selection


def _frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    d = np.where(rng.random(n) < 0.8, y, 1 - y)
    return pd.DataFrame({"row": rng.permutation(1000)[:n], "group": np.where(
        rng.random(n) < 0.5, "s=0", "s=1"), "outcome": outcomes(y, d)})


def test_row_keys_depend_on_seed_and_row_only():
    rows = np.arange(10_000)
    keys = row_keys(rows, 3)
    assert keys.min() >= 0 and keys.max() < 1
    assert abs(keys.mean() - 0.5) < 0.01  # uniform
    np.testing.assert_array_equal(row_keys(rows[::-1], 3), keys[::-1])
    assert not np.array_equal(row_keys(rows, 4), keys)


def test_outcomes_name_each_cell():
    assert list(outcomes([1, 0, 1, 0], [1, 1, 0, 0])) == ["TP", "FP", "FN", "TN"]
    with pytest.raises(ValueError, match="0/1"):
        outcomes([2], [1])


def test_selection_is_deterministic_whatever_the_row_order():
    frame = _frame()
    a, cells = select_cells(frame, 2, seed=0)
    b, _ = select_cells(frame.sample(frac=1, random_state=1), 2, seed=0)
    pd.testing.assert_frame_equal(a, b)
    assert not select_cells(frame, 2, seed=1)[0]["row"].equals(a["row"])
    # every cell that exists gives min(per_cell, its size), in group then outcome order
    assert len(cells) == 2 * len(OUTCOMES)
    assert (a.groupby(["group", "outcome"]).size().reindex(
        pd.MultiIndex.from_frame(cells[["group", "outcome"]]), fill_value=0).to_numpy()
        == cells["selected"].to_numpy()).all()
    assert list(a["group"]) == sorted(a["group"])


def test_selection_says_which_cells_are_empty():
    frame = pd.DataFrame({"row": [5, 6, 7], "group": ["s=0", "s=0", "s=1"],
                          "outcome": ["TP", "TP", "TN"]})
    selected, cells = select_cells(frame, 1, seed=0)
    assert len(selected) == 2
    assert empty_cells(cells) == ["s=0 FP", "s=0 TN", "s=0 FN", "s=1 TP", "s=1 FP", "s=1 FN"]
    assert cells.loc[(cells["group"] == "s=0") & (cells["outcome"] == "TP"),
                     "available"].item() == 2
    assert select_cells(frame, 0, seed=0)[0].empty
    # the stage's summary line: one count, however many cells (not one entry each)
    assert empty_note(cells) == "6 of 8 group x outcome cells have no test image"
    many = pd.DataFrame({"row": range(16), "group": [f"g={i}" for i in range(8)] * 2,
                         "outcome": ["TP"] * 8 + ["TN"] * 8})
    assert empty_note(select_cells(many, 1, seed=0)[1]) == (
        "16 of 32 group x outcome cells have no test image")
    full = pd.DataFrame({"row": range(4), "group": "s=0", "outcome": list(OUTCOMES)})
    assert empty_note(select_cells(full, 1, seed=0)[1]) == ""


def test_two_models_draw_the_same_images_where_they_agree():
    frame = _frame()
    other = frame.copy()
    other.loc[:20, "outcome"] = "FN"  # a second model, wrong on a few images
    a, _ = select_cells(frame, 3, seed=0)
    b, _ = select_cells(other, 3, seed=0)
    same = a.merge(b, on=["row", "group", "outcome"])
    assert len(same) >= len(a) - 6
    # the share's images do not depend on the outcomes at all
    pd.testing.assert_frame_equal(share_sample(frame, 5, 0)[["row", "group"]],
                                  share_sample(other, 5, 0)[["row", "group"]])


def test_selection_rejects_unknown_outcomes():
    with pytest.raises(ValueError, match="outcome: expected values among TP, FP, TN, FN"):
        select_cells(pd.DataFrame({"row": [1], "group": ["a"], "outcome": ["XX"]}), 1, 0)


# ------------------------------------------------------------------ attribution


class RegionModel(nn.Module):
    """A model that reads only the pixels of ``mask`` (C, H, W): a nonlinear function of their
    mean, so that occluding anything else changes nothing."""

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32))
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x):
        inside = (x * self.mask).sum((1, 2, 3)) / self.mask.sum()
        return torch.tanh(self.scale * inside) * 3 + torch.relu(inside)


@pytest.mark.parametrize("spec", [BiasSpec(kind="noise_channel"),
                                  BiasSpec(kind="patch", patch_size=3)])
def test_a_model_that_reads_only_the_bias_puts_the_attribution_on_it(spec):
    mask = spec.mask(12, 12)
    x = torch.randn(4, len(mask), 12, 12, generator=torch.Generator().manual_seed(0))
    share = attr.bias_share(attr.region_occlusion(RegionModel(mask), x, mask), mask)
    assert share == pytest.approx(np.ones(4), abs=1e-6)
    # one that reads everything but the bias puts none there
    share = attr.bias_share(attr.region_occlusion(RegionModel(~mask), x, mask), mask)
    assert share == pytest.approx(np.zeros(4), abs=1e-6)
    # the maps' windows of one pixel agree
    share = attr.bias_share(attr.occlusion(RegionModel(mask), x, window=1, stride=1), mask)
    assert share == pytest.approx(np.ones(4), abs=1e-6)


def test_the_tiles_have_the_size_of_the_bias():
    patch = BiasSpec(kind="patch", patch_size=3).mask(12, 12)  # rows and columns 8-10
    tiles = region_tiles(patch)[0]
    assert len(np.unique(tiles[patch[0]])) == 1  # the patch is one tile...
    assert (tiles == tiles[patch[0]][0]).sum() == 9  # ... and nothing else
    sizes = np.bincount(tiles.ravel())
    assert sizes.max() == 9 and len(sizes) == 5 * 5  # 2 + 3 + 3 + 3 + 1 rows of tiles
    noise = region_tiles(BiasSpec().mask(12, 12))
    assert (noise[0] == 0).all() and (noise[1] == 1).all()
    with pytest.raises(ValueError, match="with a region"):
        region_tiles(np.zeros((1, 4, 4), bool))


def test_occlusion_credits_what_supports_the_decision():
    model = RegionModel(np.ones((1, 6, 6), bool))  # increasing in every pixel
    x = torch.full((2, 1, 6, 6), 0.5)
    occ = attr.occlusion(model, x, window=2, stride=2, baseline=0.0, decisions=[1, 0])
    assert (occ[0] > 0).all() and (occ[1] < 0).all()


def test_occlusion_does_not_depend_on_the_batches():
    model = build_model("small_cnn", 2, width=4).eval()
    x = torch.randn(3, 2, 12, 12, generator=torch.Generator().manual_seed(1))
    decisions = np.array([1, 0, 1])
    one = attr.occlusion(model, x, window=3, stride=2, decisions=decisions, batch_size=7)
    many = attr.occlusion(model, x, window=3, stride=2, decisions=decisions, batch_size=10_000)
    np.testing.assert_allclose(one, many, atol=1e-5)
    # towards the decision: a decision of 0 flips the sign
    flipped = attr.occlusion(model, x, window=3, stride=2, decisions=1 - decisions)
    np.testing.assert_allclose(flipped, -many, atol=1e-5)


def test_occlusion_baseline_per_channel():
    model = RegionModel(np.ones((2, 6, 6), bool))
    x = torch.zeros(1, 2, 6, 6)
    x[:, 0] = 0.5
    occ = attr.occlusion(model, x, window=6, stride=6, baseline=[0.5, 0.0])
    assert np.abs(occ).max() == 0  # hiding a pixel under its own value changes nothing
    with pytest.raises(ValueError, match="one value or one per channel"):
        attr.occlusion(model, x, window=6, stride=6, baseline=[0, 0, 0])


class AnyPixelOfThePatch(nn.Module):
    """Fires while any pixel of ``mask`` is bright: a marker detector that only a window
    hiding the whole marker can silence."""

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.bool))

    def forward(self, x):
        return x[:, self.mask].amax(dim=1)


def test_occlusion_on_a_grid_through_the_patch_hides_it_whole():
    spec = BiasSpec(kind="patch", patch_size=4)  # rows and columns 7-10 of 12: odd
    mask = spec.mask(12, 12)
    x = torch.full((1, 1, 12, 12), -1.0)
    x[:, torch.from_numpy(mask)] = 1.0  # a white marker on black
    model = AnyPixelOfThePatch(mask)
    assert attr.region_origin(mask) == (7, 7) and attr.region_origin(None) == (0, 0)
    # windows at even rows and columns never cover the patch whole: the marker always shows
    straddling = attr.occlusion(model, x, window=4, stride=2, baseline=-1.0)
    assert np.abs(straddling).max() == 0
    aligned = attr.occlusion(model, x, window=4, stride=2, baseline=-1.0, origin=(7, 7))
    assert aligned.shape == x.shape
    assert (aligned[0, 0][mask[0]] > 0).all() and (aligned[0, 0][~mask[0]] == 0).all()
    # a grid through (0, 0) is the plain one, and one through a pixel of the grid too
    plain = build_model("small_cnn", 1, width=4).eval()
    y = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    for origin in [(0, 0), (4, 6)]:
        np.testing.assert_allclose(attr.occlusion(plain, y, window=4, stride=2, origin=origin),
                                   attr.occlusion(plain, y, window=4, stride=2), atol=1e-6)
    with pytest.raises(ValueError, match="origin"):
        attr.occlusion(model, x, window=4, stride=2, origin=(12, 0))


def test_geometry_scales_with_the_image():
    assert attr.occlusion_geometry(32, 32, 0.125, 0.0625) == (4, 2)
    assert attr.occlusion_geometry(256, 256, 0.125, 0.0625) == (32, 16)
    assert attr.occlusion_geometry(8, 8, 0.01, 0.01) == (1, 1)
    assert attr.n_windows((2, 32, 32), 4, 2) == 2 * 15 * 15


def test_maps_have_the_input_shape():
    model = build_model("small_cnn", 2, width=4).eval()
    x = torch.randn(2, 2, 12, 12, generator=torch.Generator().manual_seed(2))
    for method in attr.DECONV_METHODS:
        assert attr.deconv(model, x, method=method).shape == (2, 2, 12, 12)
    cam = attr.gradcam(model, attr.gradcam_layer(model, "small_cnn"), x, decisions=[0, 1])
    assert cam.shape == (2, 12, 12) and (cam >= 0).all()
    with pytest.raises(ValueError, match="explain.deconv: expected one of"):
        attr.deconv(model, x, method="lrp")


def test_bias_share_checks_the_mask():
    with pytest.raises(ValueError, match="mask: expected the shape of one input"):
        attr.bias_share(np.ones((1, 1, 4, 4)), np.ones((2, 4, 4), bool))
    assert np.isnan(attr.bias_share(np.zeros((1, 1, 4, 4)), np.ones((1, 4, 4), bool))).all()
    assert attr.bias_share(np.zeros((0, 1, 4, 4)), np.ones((1, 4, 4), bool)).shape == (0,)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_model_has_a_grad_cam_layer(name):
    model = build_model(name, 2).eval()
    side = 64 if name == "alexnet" else 32
    x = torch.randn(1, 2, side, side)
    assert attr.gradcam(model, attr.gradcam_layer(model, name), x).shape == (1, side, side)


def test_maps_figure_draws_a_row_per_image():
    x = np.zeros((2, 1, 8, 8), np.float32)
    maps = attr.Maps(np.ones((2, 1, 8, 8)), np.ones((2, 1, 8, 8)), np.ones((2, 8, 8)))
    fig = attr.maps_figure(x, maps, ["a", "b"], mask=BiasSpec(kind="patch", patch_size=2)
                           .mask(8, 8))
    assert len(fig.axes) == 2 * 4


# ------------------------------------------------------------------ robustness


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 12, 12), dtype=np.uint8)
    labels = rng.integers(0, 2, 30)
    s = rng.integers(0, 2, 30).astype(np.int8)
    model = build_model("small_cnn", 2, width=4).eval()
    return model, pixels, np.arange(30), labels, s


def test_robustness_at_strength_zero_is_the_plain_accuracy(small):
    model, pixels, rows, labels, s = small
    probes = rob.conditions([0, 30], [0, 0.5])
    logits = rob.probe_logits(model, pixels, rows, s, BiasSpec(), probes, batch_size=7)
    with torch.no_grad():
        from biaslab.data.bias import model_inputs

        plain = model(torch.from_numpy(model_inputs(pixels, rows, s, BiasSpec()))).numpy()
    np.testing.assert_allclose(logits[0], plain, atol=1e-5)
    np.testing.assert_allclose(logits[2], plain, atol=1e-5)
    table = rob.robustness_table(logits, probes, labels, {"s": np.where(s == 1, "s=1", "s=0")},
                                 min_cell=1)
    accuracy = ((plain >= 0).astype(int) == labels).mean()
    clean = table[(table["strength"] == 0) & (table["group"] == "all")]
    assert list(clean["probe"]) == ["rotation", "noise"]
    assert clean["accuracy"].to_numpy() == pytest.approx([accuracy, accuracy])
    assert list(table.columns) == list(rob.COLUMNS)
    # the gaps are said once, on the row of all groups
    assert table.loc[table["group"] != "all", "disparate_impact"].isna().all()


def test_probes_do_not_depend_on_the_batches(small):
    model, pixels, rows, _, s = small
    probes = rob.conditions([15], [0.3])
    a = rob.probe_logits(model, pixels, rows, s, BiasSpec(), probes, seed=1, batch_size=4)
    b = rob.probe_logits(model, pixels, rows, s, BiasSpec(), probes, seed=1, batch_size=100)
    np.testing.assert_allclose(a, b, atol=1e-5)
    c = rob.probe_logits(model, pixels, rows, s, BiasSpec(), probes, seed=2, batch_size=100)
    assert not np.allclose(b[1], c[1])  # another seed, other noise
    np.testing.assert_allclose(b[0], c[0], atol=1e-6)  # the rotation has no randomness


def test_probes_change_the_image_channel_only():
    x = torch.randn(2, 2, 8, 8)
    z = torch.randn(2, 8, 8)
    for probe, strength in (("rotation", 45.0), ("noise", 0.5)):
        out = rob.perturb(x, probe, strength, z)
        assert torch.equal(out[:, 1], x[:, 1]) and not torch.equal(out[:, 0], x[:, 0])
    assert rob.perturb(x, "noise", 0.0, z) is x
    with pytest.raises(ValueError, match="probe: expected one of rotation, noise"):
        rob.perturb(x, "blur", 1.0)


@pytest.mark.slow  # imports torchvision.transforms: seconds
@pytest.mark.parametrize("shape", [(32, 32), (20, 32)])
def test_rotation_turns_as_torchvision_does(shape):
    from torchvision.transforms.v2 import functional as tvf

    x = torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref = tvf.rotate(x, 20.0, interpolation=tvf.InterpolationMode.BILINEAR, fill=-1.0)
    # equal but near the corners, where torchvision blends the fill in its own way
    assert (rob.rotate(x, 20.0) - ref).abs().mean() < 0.01
    torch.testing.assert_close(rob.rotate(x, 0.0), x, atol=1e-5, rtol=0)


def test_robustness_without_groups_has_the_overall_row(small):
    model, pixels, rows, labels, _ = small
    logits = np.zeros((1, len(labels)))
    table = rob.robustness_table(logits, [("noise", 0.0)], labels, {}, min_cell=1)
    assert list(table["group"]) == ["all"]
    assert table["accuracy"].item() == pytest.approx((labels == 1).mean())
    table = rob.robustness_table(logits, [("noise", 0.0)], labels,
                                 {"s": np.full(len(labels), "s=1")}, min_cell=100)
    assert table["accuracy"].isna().all()  # fewer images than min_cell: missing


def test_conditions_reject_bad_strengths():
    with pytest.raises(ValueError, match="explain.noise: expected a non-empty list"):
        rob.conditions([0], [-1])
    assert rob.conditions([10, 0, 10], [0.1]) == [("rotation", 0.0), ("rotation", 10.0),
                                                  ("noise", 0.1)]


def test_config_defaults_are_valid():
    cfg = ExplainConfig()
    assert cfg.per_cell == 2 and cfg.rotations[0] == 0 and cfg.noise[0] == 0


# ------------------------------------------------------------------ the stage


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_stage_runs_end_to_end_and_deterministically(built_repo, tmp_path):
    # the pipeline's own repo and models (conftest.built_repo); explain runs twice below, by hand
    repo = copy_repo(built_repo[0], tmp_path / "repo")
    model = next(Path(repo, "models", "none").rglob("model.pt")).relative_to(repo)
    command = [sys.executable, "-m", "stages.explain", "--scheme", "none", "--model",
               str(model), "--pixels", "data/prepared/pixels.npy", "--index",
               "data/prepared/index.parquet", "--bias", "data/bias.parquet", "--split",
               "data/split.parquet"]
    outputs = {}
    for run in ("a", "b"):
        proc = sh(repo, *command, "--metrics", f"out{run}/metrics", "--figures",
                  f"out{run}/figures")
        assert proc.stdout.startswith("explain@none: ")
        outputs[run] = _digests(repo / f"out{run}")
    assert outputs["a"] == outputs["b"]
    metrics = repo / "outa" / "metrics"
    attribution = pd.read_csv(metrics / "attribution.csv")
    assert list(attribution["group"]) == ["s=0", "s=1", "all"]
    assert list(attribution.columns[:2]) == ["scheme", "group"]
    assert attribution["share"].between(0, 1).all()
    robustness = pd.read_csv(metrics / "robustness.csv")
    assert set(robustness["probe"]) == {"rotation", "noise"}
    cells = pd.read_csv(metrics / "cells.csv")
    assert len(cells) == 8
    for name in ("maps", "robustness", "sankey_label"):
        assert (repo / "outa" / "figures" / f"{name}.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["none", "noise_channel", "patch"])
def test_explain_model_for_every_kind_of_bias(kind):
    from biaslab.explain.pipeline import ATTRIBUTION_COLUMNS, explain_model

    rng = np.random.default_rng(0)
    n = 48
    pixels = rng.integers(0, 256, (n, 12, 12), dtype=np.uint8)
    test = pd.DataFrame({"row": np.arange(n), "split": "test", "label": np.tile([0, 1], n // 2),
                         "s": rng.integers(0, 2, n).astype(np.int8)})
    bias = BiasSpec(kind=kind, patch_size=3)
    has_s = kind != "none"
    model = build_model("small_cnn", bias.channels if has_s else 1, width=4).eval()
    config = ExplainConfig(per_cell=1, share_images=5, rotations=[0, 20], noise=[0, 0.5],
                           k_range=[2, 3])
    result = explain_model(model, model_name="small_cnn", pixels=pixels,
                           test=test if has_s else test.drop(columns="s"), bias=bias,
                           group_columns=["s"] if has_s else [],
                           attributes=["s"] if has_s else [], config=config, min_cell=1)
    assert list(result.attribution.columns) == list(ATTRIBUTION_COLUMNS)
    groups = ["s=0", "s=1", "all"] if has_s else ["all"]
    assert list(result.attribution["group"]) == groups
    assert len(result.cells) == 4 * (len(groups) - 1 if has_s else 1)
    assert result.selection["row"].is_unique
    if has_s:
        area = {"noise_channel": 0.5, "patch": 9 / 144}[kind]
        assert result.attribution["area"].tolist() == pytest.approx([area] * 3)
        assert result.attribution["share"].between(0, 1).all()
        assert result.attribution["images"].tolist() == [5, 5, 10]
    else:
        assert result.attribution["share"].isna().all()
        assert result.attribution["flip_rate"].isna().all()
    assert {"maps", "robustness", "sankey_label"} <= set(result.figures)
    assert set(result.robustness["strength"]) == {0, 20, 0.5}
    nothing = explain_model(model, model_name="small_cnn", pixels=pixels,
                            test=test if has_s else test.drop(columns="s"), bias=bias,
                            group_columns=[], attributes=[],
                            config=ExplainConfig(per_cell=0, share_images=0, k_range=[2, 3]))
    assert nothing.selection.empty and "maps" not in nothing.figures
    assert nothing.attribution["images"].tolist() == [0]
