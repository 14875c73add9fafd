"""Activation signatures: hooks (biaslab.explain.activations); clusters, silhouette, purity, flows,
anomalies (biaslab.explain.signatures); the Sankey (biaslab.explain.signature_figures)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from biaslab.config import MODELS, ConfigError, ExplainConfig
from biaslab.explain import activations as act
from biaslab.explain import signature_figures as sig_figures
from biaslab.explain import signatures as sig
from biaslab.model.architectures import build_model


def blobs(sizes, dim=10, spread=20.0, seed=0):
    """Points around len(sizes) far-apart centres (sd 1): (X, the blob of each point)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim)) * spread
    blob = np.repeat(np.arange(len(sizes)), sizes)
    return centres[blob] + rng.normal(size=(len(blob), dim)), blob


@pytest.mark.parametrize("k", [2, 3, 5])
def test_the_silhouette_picks_the_number_of_blobs(k):
    x, blob = blobs([40] * k)
    fit = sig.cluster_layer(x, k_range=(2, 8), seed=0)
    assert fit.k == k
    assert set(fit.silhouettes) == set(range(2, 9))
    # each cluster is one blob
    assert pd.crosstab(fit.assign, blob).gt(0).sum(axis=1).eq(1).all()


def test_purity_and_shares_of_known_clusters():
    x, blob = blobs([50, 40, 30])
    # blob 0: all label 0; blob 1: all label 1; blob 2: 24 of label 1, 6 of label 0
    label = np.r_[np.zeros(50), np.ones(40), np.ones(24), np.zeros(6)].astype(int)
    s = np.r_[np.zeros(25), np.ones(25), np.ones(40), np.zeros(30)].astype(int)
    result = sig.signatures({"a": x}, pd.DataFrame({"label": label, "s": s}), ["s"], seed=0)
    table = result.clusters.set_index("size")
    assert sorted(table.index) == [30, 40, 50]
    assert table.loc[50, "label.purity"] == 1.0 and table.loc[50, "label.majority"] == 0
    assert table.loc[40, "label.purity"] == 1.0 and table.loc[40, "label.majority"] == 1
    assert table.loc[30, "label.purity"] == pytest.approx(0.8)
    assert table.loc[30, "label=0"] == pytest.approx(0.2)
    assert table.loc[50, "s.purity"] == pytest.approx(0.5)
    assert table.loc[40, "s=1"] == 1.0
    # renumbered by the share of label 1: the all-negative blob is cluster 0
    assert list(result.clusters["size"]) == [50, 30, 40]
    assert result.layers.loc[0, "k"] == 3 and result.layers.loc[0, "silhouette"] > 0.8


def test_flows_conserve_the_images_of_every_cluster():
    rng = np.random.default_rng(1)
    x1, blob1 = blobs([30, 30, 30], seed=1)
    x2 = blobs([45, 45], seed=2)[0][rng.permutation(90)]
    x3, _ = blobs([20, 30, 40], seed=3)
    meta = pd.DataFrame({"label": blob1 % 2, "s": rng.integers(0, 2, 90)})
    result = sig.signatures({"a": x1, "b": x2, "c": x3}, meta, ["s"], seed=0)
    flows, sizes = result.flows, result.clusters.set_index(["layer", "cluster"])["size"]
    assert flows["count"].sum() == 2 * 90
    for end, layer_column in (("from", "from_layer"), ("to", "to_layer")):
        out = flows.groupby([layer_column, f"{end}_cluster"])["count"].sum()
        assert out.to_dict() == sizes.loc[list(out.index)].to_dict()
    # flows split by class and group match the images' own counts
    moved = flows[flows["from_layer"] == "a"].groupby(["label", "s"])["count"].sum()
    assert moved.to_dict() == meta.groupby(["label", "s"]).size().to_dict()
    pairs = set(zip(flows["from_layer"], flows["to_layer"], strict=True))
    assert pairs == {("a", "b"), ("b", "c")}


def test_planted_anomalies_are_found():
    x, blob = blobs([60, 60, 60])
    label = (blob == 1).astype(int)
    label[5] = 1  # a positive among the negatives of blob 0
    direction = np.zeros(x.shape[1])
    direction[0] = 1
    x[70] = x[70] + 12 * direction  # an image of blob 1 far from every centroid
    result = sig.signatures({"a": x}, pd.DataFrame({"label": label, "row": np.arange(180) + 100}),
                            k_range=(3, 3), seed=0)
    found = result.anomalies
    other, far = found[found["reason"] == "other_class"], found[found["reason"] == "far"]
    assert list(other["position"]) == [5] and list(other["row"]) == [105]
    assert other["cluster_label"].iloc[0] == 0
    assert other["cluster_purity"].iloc[0] == pytest.approx(59 / 60)
    assert list(far["position"]) == [70]
    assert far["z"].iloc[0] > 3.5
    # blob 2 mixes both labels (0 only) - no other_class there; a 50/50 cluster never counts
    mixed = pd.DataFrame({"label": np.r_[label[:120], np.arange(60) % 2]})
    again = sig.signatures({"a": x}, mixed, k_range=(3, 3), seed=0).anomalies
    assert list(again.loc[again["reason"] == "other_class", "position"]) == [5]


def test_signatures_are_deterministic_given_a_seed():
    x, blob = blobs([30, 30, 30], seed=4)
    meta = pd.DataFrame({"label": blob % 2})
    one = sig.signatures({"a": x, "b": x[:, ::-1].copy()}, meta, seed=3)
    two = sig.signatures({"a": x, "b": x[:, ::-1].copy()}, meta, seed=3)
    for name in ("layers", "silhouettes", "clusters", "flows", "anomalies", "assignments"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name))


def test_a_constant_layer_is_one_cluster():
    meta = pd.DataFrame({"label": [0, 1] * 10})
    result = sig.signatures({"dead": np.zeros((20, 8))}, meta)
    assert result.layers.loc[0, ["components", "k"]].tolist() == [0, 1]
    assert result.clusters["size"].tolist() == [20]
    assert result.silhouettes.empty and result.flows.empty
    assert sig.cluster_layer(np.arange(6.0).reshape(3, 2), k_range=(4, 8)).k == 2  # N - 1


def test_pca_keeps_the_components_asked_for():
    x, _ = blobs([30, 30], dim=12)
    assert sig.cluster_layer(x, pca_components=3).components == 3
    assert sig.cluster_layer(x, pca_components=50).components == 12
    fit = sig.cluster_layer(x, pca_variance=0.5)
    assert fit.explained_variance >= 0.5 and fit.components < 12


@pytest.mark.parametrize("activations, meta, message", [
    ({"a": np.zeros((5, 2))}, pd.DataFrame({"y": range(5)}), r"column\(s\) \['label'\]"),
    ({"a": np.zeros((4, 2))}, pd.DataFrame({"label": range(5)}), r"activations\['a'\]: .*\(5, F\)"),
    ({}, pd.DataFrame({"label": range(5)}), "at least one layer"),
])
def test_bad_inputs_are_named(activations, meta, message):
    with pytest.raises(ValueError, match=message):
        sig.signatures(activations, meta)


def test_k_range_is_checked():
    with pytest.raises(ValueError, match=r"explain.k_range: .* got \[3, 2\]"):
        sig.cluster_layer(np.zeros((5, 2)), k_range=(3, 2))
    with pytest.raises(ConfigError, match=r"explain.k_range = \[5, 2\] is not allowed"):
        ExplainConfig(k_range=[5, 2])
    with pytest.raises(ConfigError, match=r"explain.layers = \['a', 'a'\]"):
        ExplainConfig(layers=["a", "a"])


# --- activations -------------------------------------------------------------------------------

def test_hooked_activations_are_the_pooled_layer_outputs():
    torch.manual_seed(0)
    model = build_model("small_cnn", 2, width=4).train()
    x = torch.randn(10, 2, 16, 16)
    acts = act.layer_activations(model, x, act.default_layers("small_cnn"), batch_size=3)
    assert {k: v.shape for k, v in acts.items()} == {
        "features.3": (10, 4), "features.7": (10, 8), "features": (10, 16)}
    assert model.training  # its mode restored
    model.eval()
    with torch.no_grad():
        expected = model.features(x).numpy()
        block1 = model.features[:4](x).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(acts["features"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["features.3"], block1, rtol=1e-5, atol=1e-6)
    # the same from an iterable of batches, and from a numpy array
    batched = act.layer_activations(model, (x[i:i + 4] for i in range(0, 10, 4)), ["features"])
    np.testing.assert_allclose(batched["features"], expected, rtol=1e-5, atol=1e-6)
    whole = act.layer_activations(model, x.numpy(), ["features.7"])
    np.testing.assert_allclose(whole["features.7"], acts["features.7"], rtol=1e-5, atol=1e-6)


def test_an_unknown_layer_is_named_with_the_allowed_ones():
    model = build_model("small_cnn", 1, width=4)
    with pytest.raises(ValueError, match=r"explain.layers: 'layer9' is not a layer of this "
                                         r"SmallCNN; allowed: module names such as features, "):
        act.layer_activations(model, torch.zeros(2, 1, 8, 8), ["layer9"])
    with pytest.raises(ValueError, match=r"inputs: expected images \(N, C, H, W\)"):
        act.layer_activations(model, torch.zeros(2, 8, 8), ["features"])
    with pytest.raises(ValueError, match="train.model: no default explain.layers for 'vit'"):
        act.default_layers("vit")


def _default_layers_work(name):
    size = 64 if name == "alexnet" else 32  # alexnet's pooling needs at least 64x64
    model = build_model(name, 2, width=4)
    acts = act.layer_activations(model, torch.randn(3, 2, size, size),
                                 act.default_layers(name))
    assert list(acts) == act.default_layers(name)
    assert all(a.ndim == 2 and a.shape[0] == 3 and a.shape[1] > 0 for a in acts.values())


def test_every_model_has_default_layers():
    assert set(act.DEFAULT_LAYERS) == set(MODELS)
    _default_layers_work("small_cnn")


@pytest.mark.slow
@pytest.mark.parametrize("name", [m for m in MODELS if m != "small_cnn"])
def test_default_layers_exist_in_the_torchvision_models(name):
    _default_layers_work(name)


# --- figures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_layers():
    rng = np.random.default_rng(5)
    x1, blob = blobs([30, 30, 30], seed=5)
    x2 = blobs([50, 40], seed=6)[0][rng.permutation(90)]
    meta = pd.DataFrame({"label": blob % 2, "s": rng.integers(0, 2, 90)})
    return sig.signatures({"a": x1, "b": x2, "c": x1[::-1].copy()}, meta, ["s"], seed=0)


@pytest.mark.parametrize("color_by", ["label", "s"])
def test_sankey_bands_are_the_flows(three_layers, color_by):
    nodes, bands = sig_figures.sankey_layout(three_layers, color_by)
    flows = three_layers.flows.groupby(
        ["from_layer", "from_cluster", "to_layer", "to_cluster", color_by])["count"].sum()
    assert bands.set_index(["from_layer", "from_cluster", "to_layer", "to_cluster", "value"])[
        "count"].sort_index().to_dict() == flows.sort_index().to_dict()
    scale = (nodes["y1"] - nodes["y0"]).sum() / nodes["size"].sum()
    for end in ("from", "to"):
        width = bands[f"{end}_y1"] - bands[f"{end}_y0"]
        np.testing.assert_allclose(width, bands["count"] * scale)
        # the bands leaving (entering) a node fill it exactly
        span = bands.groupby([f"{end}_layer", f"{end}_cluster"]).agg(
            lo=(f"{end}_y0", "min"), hi=(f"{end}_y1", "max"))
        node = nodes.set_index(["layer", "cluster"]).loc[span.index]
        np.testing.assert_allclose(span["lo"], node["y0"])
        np.testing.assert_allclose(span["hi"], node["y1"])
    fig = sig_figures.sankey_figure(three_layers, color_by)
    drawn = {c.get_gid(): c for c in fig.axes[0].collections
             if str(c.get_gid()).startswith("band:")}
    assert len(drawn) == len(bands)
    for i, band in bands.iterrows():
        vertices = drawn[f"band:{i}"].get_paths()[0].vertices
        left = vertices[np.isclose(vertices[:, 0], vertices[:, 0].min()), 1]
        right = vertices[np.isclose(vertices[:, 0], vertices[:, 0].max()), 1]
        assert left.max() - left.min() == pytest.approx(band["count"] * scale)
        assert right.max() - right.min() == pytest.approx(band["count"] * scale)
    fig.savefig(__import__("io").BytesIO(), format="png")  # it renders


def test_the_anomaly_figure_shows_the_most_flagged_first(three_layers):
    anomalies = pd.DataFrame({
        "position": [4, 7, 4], "row": [14, 17, 14], "layer": ["a", "a", "b"], "cluster": 0,
        "reason": ["far", "other_class", "far"], "distance": 1.0, "z": [4.0, 9.0, 5.0],
        "label": [1, 0, 1], "s": [0, 1, 0], "cluster_label": 0, "cluster_purity": 0.9})
    images = np.arange(10 * 2 * 4 * 4, dtype=float).reshape(10, 2, 4, 4)
    fig = sig_figures.anomaly_figure(anomalies, images, n=1)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["row 14\ny=1 s=0\nfar x2"]
    assert len(sig_figures.anomaly_figure(anomalies, images).axes) == 2
    assert sig_figures.anomaly_figure(anomalies.iloc[:0], images) is None
