"""What one model looks at, end to end: the explain stage's work, as one function.

:func:`explain_model` scores the test images, draws the images to explain
(:mod:`biaslab.explain.select`), maps them (:mod:`biaslab.explain.attribution`), measures the
bias's share of the attribution per group beside the flip rate, probes robustness
(:mod:`biaslab.explain.robustness`) and clusters the activations
(:mod:`biaslab.explain.activations`, :mod:`biaslab.explain.signatures`, drawn by
:mod:`biaslab.explain.signature_figures`). Arrays and DataFrames in, tables and matplotlib Figures
out: the caller writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from biaslab.data.bias import BiasSpec, model_inputs
from biaslab.data.columns import require_columns
from biaslab.data.group_keys import group_keys
from biaslab.explain import activations as act
from biaslab.explain import attribution as attr
from biaslab.explain import robustness as rob
from biaslab.explain import signature_figures as sig_figures
from biaslab.explain import signatures as sig
from biaslab.explain.select import (
    ALL,
    empty_cells,
    outcomes,
    row_groups,
    select_cells,
    share_sample,
)
from biaslab.model.predict import predict_scores

if TYPE_CHECKING:
    from biaslab.config import ExplainConfig

ATTRIBUTION_COLUMNS = ("group", "n", "images", "share", "share_lo", "share_hi", "area",
                       "flip_rate")


@dataclass
class Explanation:
    """The explain stage's results for one model.

    - ``selection``: the explained images (``row``, ``group``, ``outcome``, ``label``,
      ``score``, ``decision``, ``share``: the image's bias share, NaN without a bias);
    - ``cells``: every group x outcome, ``available`` and ``selected`` images;
    - ``attribution``: per group and ``all`` (:data:`ATTRIBUTION_COLUMNS`): test images ``n``,
      the ``images`` the share is measured on, the mean ``share`` with the lowest and highest
      image's, ``area`` (the bias region's share of the input: what attention spread evenly
      would give) and the ``flip_rate`` over the group's test images;
    - ``robustness``: :func:`biaslab.explain.robustness.robustness_table`;
    - ``signatures``: :class:`biaslab.explain.signatures.Signatures`;
    - ``figures``: name -> matplotlib Figure (``maps``, ``robustness``, ``sankey_label``,
      ``sankey_s``, ``anomalies``; those with nothing to draw are left out).
    """

    selection: pd.DataFrame
    cells: pd.DataFrame
    attribution: pd.DataFrame
    robustness: pd.DataFrame
    signatures: sig.Signatures
    figures: dict = field(default_factory=dict)

    @property
    def empty(self) -> list[str]:
        """The group x outcome cells without test images (:func:`select.empty_cells`)."""
        return empty_cells(self.cells)


def _scored(model, pixels, test, bias, group_columns, threshold, batch_size, device):
    """The test rows with their group, score, decision, outcome and flip (NaN without S)."""
    scores = predict_scores(model, pixels, test, bias, batch_size=batch_size, device=device)
    frame = test.reset_index(drop=True).copy()
    frame["group"] = row_groups(frame, group_columns)
    frame["score"] = scores["score"].to_numpy()
    frame["decision"] = (frame["score"] >= threshold).astype(int)
    frame["outcome"] = outcomes(frame["label"], frame["decision"])
    frame["flip"] = (((scores["score_s0"] >= threshold) != (scores["score_s1"] >= threshold))
                     .astype(float).to_numpy() if "score_s1" in scores else np.nan)
    return frame


def _inputs(pixels, frame: pd.DataFrame, bias: BiasSpec) -> np.ndarray:
    s = frame["s"].to_numpy() if "s" in frame else None
    return model_inputs(pixels, frame["row"].to_numpy(), s, bias)


def _attribution_table(frame, sample, shares, area) -> pd.DataFrame:
    records = []
    groups = sorted(frame["group"].unique())
    for group in groups + ([ALL] if groups != [ALL] else []):  # without groups: all, once
        whole = frame if group == ALL else frame[frame["group"] == group]
        mine = shares if group == ALL else shares[sample["group"].to_numpy() == group]
        mine = mine[~np.isnan(mine)]
        records.append({
            "group": group, "n": len(whole), "images": len(mine),
            "share": mine.mean() if len(mine) else np.nan,
            "share_lo": mine.min() if len(mine) else np.nan,
            "share_hi": mine.max() if len(mine) else np.nan,
            "area": area, "flip_rate": whole["flip"].mean()})
    return pd.DataFrame(records, columns=list(ATTRIBUTION_COLUMNS))


def _title(row) -> str:
    return f"row {row.row}\n{row.group} {row.outcome}\nP(y=1) {row.score:.2f}"


def attribution_part(model, model_name, pixels, frame, bias, config, device):
    """Maps of the selected images, and the bias share of the sampled ones, per group."""
    selected, cells = select_cells(frame, config.per_cell, config.seed)
    sample = share_sample(frame, config.share_images, config.seed)
    both = pd.concat([selected, sample]).drop_duplicates("row").reset_index(drop=True)
    x = _inputs(pixels, both, bias)
    # the image channel is hidden under the test images' mean pixel, a bias channel under 0
    # (no bias): a black or white square would add a shape of its own
    mean = float(pixels[frame["row"].to_numpy()].mean()) * (2.0 / 255.0) - 1.0
    baseline = [mean] + [0.0] * (x.shape[1] - 1)
    mask = bias.mask(*x.shape[2:]) if "s" in frame and bias.kind != "none" else None
    if mask is not None:  # an image with S=0 has no bias: its share is the empty region's
        shares = attr.bias_share(attr.region_occlusion(
            model, x, mask, baseline=baseline, decisions=both["decision"].to_numpy(),
            batch_size=config.batch_size, device=device), mask)
    else:
        shares = np.full(len(both), np.nan)
    share_of = dict(zip(both["row"], shares, strict=True))
    table = _attribution_table(frame, sample, np.array([share_of[r] for r in sample["row"]],
                                                       dtype=float),
                               float(mask.mean()) if mask is not None else np.nan)
    selected = selected.assign(share=[share_of[r] for r in selected["row"]])
    figure = None
    if len(selected):
        # ``both`` starts with ``selected``, in order (its rows are distinct): their inputs
        figure = _maps_figure(model, model_name, x[:len(selected)], selected, baseline, mask,
                              config, device)
    return selected, cells, table, figure


def _maps_figure(model, model_name, x, selected, baseline, mask, config, device):
    """The three maps of the selected images, drawn."""
    height, width = x.shape[2:]
    window, stride = attr.occlusion_geometry(height, width, config.occlusion_window,
                                             config.occlusion_stride)
    decisions = selected["decision"].to_numpy()
    common = {"decisions": decisions, "batch_size": config.batch_size, "device": device}
    maps = attr.Maps(
        occlusion=attr.occlusion(model, x, window=window, stride=stride, baseline=baseline,
                                 origin=attr.region_origin(mask), **common),
        deconv=attr.deconv(model, x, method=config.deconv, **common),
        gradcam=attr.gradcam(model, attr.gradcam_layer(model, model_name), x, **common))
    return attr.maps_figure(x, maps, [_title(r) for r in selected.itertuples()], mask=mask,
                            deconv_name=config.deconv)


def robustness_part(model, pixels, frame, bias, attributes, threshold, min_cell, config,
                    device):
    """The robustness table and its figure."""
    probes = rob.conditions(config.rotations, config.noise)
    s = frame["s"].to_numpy() if "s" in frame else None
    logits = rob.probe_logits(model, pixels, frame["row"].to_numpy(), s, bias, probes,
                              seed=config.seed, batch_size=config.batch_size, device=device)
    groups = {a: group_keys(frame, [a], what="evaluate.groups") for a in attributes}
    table = rob.robustness_table(logits, probes, frame["label"].to_numpy(), groups,
                                 threshold=threshold, min_cell=min_cell)
    return table, rob.robustness_figure(table)


def activation_signatures(model, batches, meta: pd.DataFrame, group_columns: list[str],
                          layers: list[str], config: ExplainConfig, device) -> sig.Signatures:
    """The signatures (:func:`biaslab.explain.signatures.signatures`, with the ``explain``
    section's settings) of the images of ``batches`` (model inputs), ``meta`` their rows, on the
    activations of ``layers``."""
    acts = act.layer_activations(model, batches, layers, device=device)
    return sig.signatures(
        acts, meta, group_columns, pca_components=config.pca_components,
        pca_variance=config.pca_variance, k_range=config.k_range, seed=config.seed,
        anomaly_purity=config.anomaly_purity, anomaly_z=config.anomaly_z)


def signatures_part(model, model_name, pixels, frame, bias, group_columns, config, device):
    """Activation signatures of the test images, and their figures."""
    layers = list(config.layers) or act.default_layers(model_name)
    batches = (torch.from_numpy(_inputs(pixels, frame.iloc[i:i + config.batch_size], bias))
               for i in range(0, len(frame), config.batch_size))
    result = activation_signatures(model, batches, frame[["row", "label", *group_columns]],
                                   group_columns, layers, config, device)
    figures = {"sankey_label": sig_figures.sankey_figure(result, "label")}
    if "s" in group_columns:
        figures["sankey_s"] = sig_figures.sankey_figure(result, "s")
    anomalies = sig_figures.anomaly_figure(result.anomalies, pixels[frame["row"].to_numpy()],
                                           n=config.anomaly_images)
    if anomalies is not None:
        figures["anomalies"] = anomalies
    return result, figures


def explain_model(model: nn.Module, *, model_name: str, pixels: np.ndarray, test: pd.DataFrame,
                  bias: BiasSpec, group_columns: list[str], attributes: list[str],
                  config: ExplainConfig, threshold: float = 0.5, min_cell: int = 5,
                  device: str | torch.device = "cpu") -> Explanation:
    """Explain one model on the test images.

    Parameters
    ----------
    model : a model of :mod:`biaslab.model.architectures` (``model_name``: its ``train.model``).
    pixels : uint8 (N, H, W), the prepared images.
    test : the test rows: ``row``, ``split``, ``label``, ``s`` (when injected) and the group
        columns.
    bias : how S is shown to the model (as in training).
    group_columns : the columns whose joint value is the group of the selection and of the
        attribution share (``s`` and ``evaluate.groups``; [] for a single group ``all``).
    attributes : the attributes whose groups the robustness gaps compare, each alone (e.g.
        ``evaluate.groups``; []: the whole test set only).
    config : the ``explain`` section.
    threshold : decision threshold on P(y=1) (``postprocess.fixed_threshold``).
    min_cell : ``evaluate.min_cell``, for the robustness metrics.
    device : where the model runs.
    """
    require_columns(test, ["row", "split", "label", *group_columns], what="the test rows")
    if len(test) == 0:
        raise ValueError("explain: no test images to explain; check split.fractions")
    model = model.eval().to(device)
    frame = _scored(model, pixels, test, bias, group_columns, threshold, config.batch_size,
                    device)
    selection, cells, attribution, maps = attribution_part(
        model, model_name, pixels, frame, bias, config, device)
    robustness, robustness_fig = robustness_part(
        model, pixels, frame, bias, attributes, threshold, min_cell, config, device)
    signatures, figures = signatures_part(model, model_name, pixels, frame, bias, group_columns,
                                          config, device)
    figures = {**({"maps": maps} if maps is not None else {}), "robustness": robustness_fig,
               **figures}
    keep = ["row", "group", "outcome", "label", "score", "decision", "share"]
    return Explanation(selection=selection[keep], cells=cells, attribution=attribution,
                       robustness=robustness, signatures=signatures, figures=figures)
