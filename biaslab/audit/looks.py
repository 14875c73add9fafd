"""What an audited model file looks at: the report's "What the model looks at" section.

The pipeline's explain stage, on a :class:`biaslab.audit.model_file.ModelFile` scored on the
user's test images, with the same tools (:mod:`biaslab.explain`):

- **attribution maps** of a seeded draw of test images per group x outcome
  (:func:`biaslab.explain.select.select_cells`, the model's own decisions at
  ``postprocess.fixed_threshold``): occlusion for any model, ONNX included (forward passes
  only), deconvolution and Grad-CAM for a model that can be hooked (an architecture plus
  state dict), at the layer the user names or the last image-shaped one
  (:func:`biaslab.audit.model_file.gradcam_layer`);
- **robustness**: accuracy and the gaps per group under rotation and noise
  (:mod:`biaslab.explain.robustness`).

- **activation signatures** (:mod:`biaslab.explain.signatures`) of a model that can be hooked:
  the test images clustered on named layers' activations (``explain.layers``, or the
  architecture's defaults: a resnet's four stages), each cluster's share of each group, the
  flows between layers and the anomalous clusters.

No injected bias here (a model trained elsewhere was shown no S): no bias share and no flip
rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from biaslab.audit.model_file import ModelFile, gradcam_layer
from biaslab.data.bias import BiasSpec, model_inputs
from biaslab.data.group_keys import group_keys
from biaslab.explain import activations as act
from biaslab.explain import attribution as attr
from biaslab.explain import robustness as rob
from biaslab.explain import signature_figures as sig_figures
from biaslab.explain.pipeline import activation_signatures
from biaslab.explain.select import outcomes, row_groups, select_cells
from biaslab.report import ExplainFigure, ExplainTable
from biaslab.report.figures import png

NO_BIAS = BiasSpec(kind="none")


@dataclass(frozen=True)
class Looks:
    """``items``: the report's figures and tables; ``selection``: the mapped images (``row``,
    ``group``, ``outcome``, ``label``, ``score``, ``decision``); ``robustness``:
    :func:`biaslab.explain.robustness.robustness_table`; ``note``: what was left out, and why
    ("" when nothing was)."""

    items: list
    selection: pd.DataFrame
    robustness: pd.DataFrame
    note: str


def look(model: ModelFile, pixels: np.ndarray, test: pd.DataFrame, *, attributes: Sequence[str],
         config, threshold: float = 0.5, min_cell: int = 5, layer: str | None = None,
         arch: str | None = None, device: str | torch.device = "cpu") -> Looks:
    """Maps and robustness of ``model`` on the ``test`` rows.

    Parameters
    ----------
    model : the loaded model file.
    pixels : uint8 (N, H, W), the prepared images; ``test["row"]`` indexes them.
    test : the test rows: ``row``, ``label``, ``score`` (P(y=1), the model's) and the
        ``attributes``.
    attributes : the groups compared (``evaluate.groups``): their joint value is the group of
        the maps' draw, each alone that of the robustness gaps.
    config : the ``explain`` section (:class:`biaslab.config.ExplainConfig`): ``per_cell``,
        ``occlusion_window``, ``occlusion_stride``, ``deconv``, ``rotations``, ``noise``,
        ``seed``, ``batch_size``.
    threshold : the decision is score >= threshold (``postprocess.fixed_threshold``).
    min_cell : ``evaluate.min_cell``, for the robustness metrics.
    layer : Grad-CAM's module name (None: :func:`~biaslab.audit.model_file.gradcam_layer`'s).
    arch : the torchvision architecture of a state dict (``--arch``): its default layers for
        the activation signatures when ``config.layers`` is empty.
    """
    frame = test.reset_index(drop=True).copy()
    frame["group"] = row_groups(frame, list(attributes))
    frame["decision"] = (frame["score"] >= threshold).astype(int)
    frame["outcome"] = outcomes(frame["label"], frame["decision"])
    selected, _ = select_cells(frame, config.per_cell, config.seed)
    layers, why = _signature_layers(model, config, arch)
    items, note = [], "" if model.hookable else (
        f"Grad-CAM and {config.deconv.replace('_', ' ')} need a model that can be hooked: "
        f"{model.why_not}; occlusion needs forward passes only")
    note = "; ".join(n for n in (note, why) if n)
    if len(selected):
        items.append(ExplainFigure("Attribution maps", png(_maps(
            model, pixels, frame, selected, config, layer, device)), _MAPS + (
            f" {note}." if note else "")))
    table, figure = _robustness(model, pixels, frame, attributes, config, threshold, min_cell,
                                device)
    items.append(ExplainFigure("Robustness: rotation and noise", png(figure), _ROBUSTNESS))
    items.append(ExplainTable("Robustness, per condition and group", _shown(table),
                              "The figure's values: accuracy per group, the gaps on the row "
                              "of all images."))
    if layers:
        items += _signatures(model, pixels, frame, list(attributes), layers, config, device)
    keep = ["row", "group", "outcome", "label", "score", "decision"]
    return Looks(items=items, selection=selected[keep], robustness=table, note=note)


_MAPS = ("Test images per group x outcome (TP, FP, TN, FN of the model's own decisions; a "
         "seeded draw), with what the model's decision rests on: occlusion sensitivity (red "
         "supports the decision, blue opposes it), the deconvnet-style map and Grad-CAM "
         "(captum), shown as the model sees the image after biaslab prepared it.")
_ROBUSTNESS = ("Accuracy and the fairness gaps per group on the test images rotated and with "
               "additive Gaussian noise (explain.rotations, explain.noise; in the units of the "
               "image normalised to [-1, 1]), at the model's own threshold.")


def _maps(model, pixels, frame, selected, config, layer, device):
    """The maps of the selected images, drawn."""
    x = model_inputs(pixels, selected["row"].to_numpy(), None, NO_BIAS)
    height, width = x.shape[2:]
    window, stride = attr.occlusion_geometry(height, width, config.occlusion_window,
                                             config.occlusion_stride)
    # hidden under the test images' mean pixel: a black or white square adds a shape of its own
    baseline = float(pixels[frame["row"].to_numpy()].mean()) * (2.0 / 255.0) - 1.0
    common = {"decisions": selected["decision"].to_numpy(), "batch_size": config.batch_size,
              "device": device}
    maps = attr.Maps(occlusion=attr.occlusion(model, x, window=window, stride=stride,
                                              baseline=baseline, **common))
    if model.hookable:
        maps = attr.Maps(
            occlusion=maps.occlusion, deconv=attr.deconv(model, x, method=config.deconv, **common),
            gradcam=attr.gradcam(model, gradcam_layer(model, layer), x, **common))
    titles = [f"row {r.row}\n{r.group} {r.outcome}\nP(y=1) {r.score:.2f}"
              for r in selected.itertuples()]
    return attr.maps_figure(x, maps, titles, deconv_name=config.deconv)


def _robustness(model, pixels, frame, attributes, config, threshold, min_cell, device):
    probes = rob.conditions(config.rotations, config.noise)
    logits = rob.probe_logits(model, pixels, frame["row"].to_numpy(), None, NO_BIAS, probes,
                              seed=config.seed, batch_size=config.batch_size, device=device)
    groups = {a: group_keys(frame, [a], what="evaluate.groups") for a in attributes}
    table = rob.robustness_table(logits, probes, frame["label"].to_numpy(), groups,
                                 threshold=threshold, min_cell=min_cell)
    return table, rob.robustness_figure(table, title=f"{model.source}")


def _signature_layers(model: ModelFile, config, arch: str | None) -> tuple[list[str], str]:
    """The layers to cluster, or why there are none."""
    if not model.hookable:
        return [], "activation signatures need one too"
    if config.layers:
        return list(config.layers), ""
    if arch in act.DEFAULT_LAYERS:  # a resnet's stages: net.layer1 ... in the wrapped model
        return act.default_layers(arch), ""
    return [], (f"activation signatures: no default layers for --arch {arch}; name its modules "
                "in explain.layers (--params), e.g. net.features")


def _signatures(model, pixels, frame, attributes, layers, config, device) -> list:
    """The activation signatures' figures of the test images on ``layers``."""
    rows = frame["row"].to_numpy()
    batches = (torch.from_numpy(model_inputs(pixels, rows[i:i + config.batch_size], None,
                                             NO_BIAS))
               for i in range(0, len(rows), config.batch_size))
    result = activation_signatures(model, batches, frame[["row", "label", *attributes]],
                                   attributes, layers, config, device)
    items = [ExplainFigure("Activation signatures: clusters across layers",
                           png(sig_figures.sankey_figure(result, "label")), _SIGNATURES)]
    anomalies = sig_figures.anomaly_figure(result.anomalies, pixels[rows],
                                           n=config.anomaly_images)
    if anomalies is not None:
        items.append(ExplainFigure("Activation signatures: anomalous images", png(anomalies),
                                   "Images far from their cluster, or in a cluster of the other "
                                   "class (explain.anomaly_purity, anomaly_z), those flagged in "
                                   "most layers first."))
    return items


_SIGNATURES = ("The test images clustered on each named layer's activations (k-means after "
               "PCA, k chosen by silhouette; explain.layers), and how they flow from layer to "
               "layer, coloured by the label: a cluster that gathers one group whatever the "
               "label is a representation of the group (Wang et al.'s activation signatures).")


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """The robustness table as the report shows it: rounded, the gaps' empty rows kept."""
    out = table.copy()
    numbers = out.select_dtypes("number").columns.drop(["n", "strength"], errors="ignore")
    out[numbers] = out[numbers].round(3)
    return out
