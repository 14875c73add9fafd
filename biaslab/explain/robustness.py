"""Robustness probes: accuracy and fairness gaps per group when the test images are rotated or
noised.

A model that reads the image should lose accuracy gracefully as the image degrades; a model
that reads a shortcut keeps its accuracy where the shortcut survives, and the groups drift
apart. Each probe changes the image channel only (channel 0, where a ``patch`` bias lives too,
and so turns with it); the noise channel of a ``noise_channel`` bias is left as it is, as the
bias is not part of the scan.

- rotation by a degrees about the centre, bilinear, the corners filled with black (-1);
- additive Gaussian noise of standard deviation σ in normalised units (the image spans
  [-1, 1]), not clipped; each image's noise is one fixed N(0, I) draw per (seed, row) scaled by
  σ, so the strengths are nested and the result does not depend on the batches.

Every condition is one pass over the test images in batches; the metrics come from
:func:`biaslab.fairness.metrics.group_report` without resampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from biaslab.data.bias import BiasSpec, model_inputs, noise
from biaslab.fairness.metrics import NEEDS, cell_sizes, group_report, rates

PROBES = ("rotation", "noise")
PER_GROUP = ("accuracy", "balanced_accuracy", "tpr", "fpr", "selection_rate")
GAPS = ("disparate_impact", "statistical_parity_difference", "equal_opportunity_difference",
        "average_odds_difference", "equalized_odds_difference")
COLUMNS = ("probe", "strength", "attribute", "group", "n", *PER_GROUP, *GAPS)
_NOISE_STREAM = 0x6E6F6973  # "nois": keeps this noise apart from the bias channel's


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """``x`` (B, C, H, W) turned counter-clockwise by ``degrees`` about its centre, bilinear,
    what falls outside filled with -1 (black), as torchvision's ``rotate``.

    Two torch calls rather than torchvision's function: importing torchvision.transforms
    loads torch._dynamo, a second of every explain stage's start on a CPU.
    """
    a = math.radians(degrees)
    n, _, height, width = x.shape
    # output pixel -> input pixel, in grid_sample's [-1, 1] coordinates of each axis
    theta = torch.tensor([[math.cos(a), -math.sin(a) * height / width, 0.0],
                          [math.sin(a) * width / height, math.cos(a), 0.0]],
                         dtype=x.dtype, device=x.device).expand(n, 2, 3)
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    # sampled from x + 1 and shifted back: grid_sample's zeros outside become -1
    return nn.functional.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False) - 1


def perturb(x: torch.Tensor, probe: str, strength: float, z: torch.Tensor | None = None,
            ) -> torch.Tensor:
    """``x`` (B, C, H, W) with its image channel rotated by ``strength`` degrees or noised with
    standard deviation ``strength`` (``z``: the (B, H, W) N(0, I) draws). Strength 0: ``x``."""
    if probe not in PROBES:
        raise ValueError(f"probe: expected one of {', '.join(PROBES)}, got {probe!r}")
    if strength == 0:
        return x
    out = x.clone()
    if probe == "rotation":
        out[:, :1] = rotate(x[:, :1], float(strength))
    else:
        if z is None or z.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(f"noise: expected draws of shape {(x.shape[0], *x.shape[2:])}")
        out[:, 0] = x[:, 0] + strength * z
    return out


def conditions(rotations: Sequence[float], noise: Sequence[float]) -> list[tuple[str, float]]:
    """(probe, strength) pairs in order, each probe's strengths sorted and without repeats."""
    for name, values, low in (("rotations", rotations, -180), ("noise", noise, 0)):
        if not values or not all(np.isfinite(v) and low <= v <= 180 for v in values):
            raise ValueError(f"explain.{name}: expected a non-empty list of numbers in "
                             f"[{low}, 180], got {list(values)}")
    return ([("rotation", float(a)) for a in sorted(set(rotations))]
            + [("noise", float(s)) for s in sorted(set(noise))])


@torch.no_grad()
def probe_logits(model: nn.Module, pixels: np.ndarray, rows: np.ndarray, s: np.ndarray | None,
                 bias: BiasSpec, probes: list[tuple[str, float]], *, seed: int = 0,
                 batch_size: int = 512, device: str | torch.device = "cpu") -> np.ndarray:
    """The model's logit of every row under every probe: (len(probes), N) float32.

    The inputs are built batch by batch (:func:`biaslab.data.bias.model_inputs`), so memory holds
    one
    batch, whatever the number of test images; the clean inputs are scored once.
    """
    model = model.eval().to(device)
    rows = np.asarray(rows)
    out = np.empty((len(probes), len(rows)), dtype=np.float32)
    noisy = any(p == "noise" and v != 0 for p, v in probes)
    for start in range(0, len(rows), batch_size):
        part = slice(start, start + batch_size)
        x = torch.from_numpy(model_inputs(pixels, rows[part], None if s is None else s[part],
                                          bias)).to(device)
        z = (torch.from_numpy(noise(rows[part], tuple(x.shape[2:]), seed, _NOISE_STREAM)).to(device)
             if noisy else None)
        clean = None
        for i, (probe, strength) in enumerate(probes):
            if strength == 0:
                clean = model(x).float() if clean is None else clean
                out[i, part] = clean.cpu().numpy()
            else:
                out[i, part] = model(perturb(x, probe, strength, z)).float().cpu().numpy()
    return out


def _overall(labels: np.ndarray, decisions: np.ndarray, min_cell: int) -> pd.DataFrame:
    """The ``all`` row of :func:`biaslab.fairness.metrics.group_report`, for a set without
    groups."""
    counts = np.bincount(2 * labels.astype(int) + decisions, minlength=8)
    figures, sizes = rates(counts), cell_sizes(counts)
    row = {"group": "all", "n": int(sizes["images"])}
    for m in PER_GROUP:
        short = any(sizes[c] < min_cell for c in NEEDS[m])
        row[m] = np.nan if short else float(figures[m])
    return pd.DataFrame([row])


def _rows_of(probe, strength, attribute, per_group, between) -> pd.DataFrame:
    table = per_group[["group", "n", *PER_GROUP]].copy()
    gaps = between.set_index("metric")["value"]
    for gap in GAPS:  # the gaps are between the groups: said once, on the row of all of them
        table[gap] = np.where(table["group"] == "all", gaps.get(gap, np.nan), np.nan)
    return table.assign(probe=probe, strength=strength, attribute=attribute)


def robustness_table(logits: np.ndarray, probes: list[tuple[str, float]], labels,
                     groups: dict[str, np.ndarray], *, threshold: float = 0.5,
                     min_cell: int = 5) -> pd.DataFrame:
    """Accuracy and gaps per group under each probe (:data:`COLUMNS`, one row per probe x
    strength x attribute x group, and ``all``; the gaps on the ``all`` row).

    Parameters
    ----------
    logits : (len(probes), N) from :func:`probe_logits`.
    probes : the (probe, strength) of each row of ``logits``.
    labels : (N,) 0/1.
    groups : ``{attribute: (N,) group keys}`` (e.g. ``{"s": ["s=0", ...]}``); an attribute with
        a single group gets its ``all`` row only. Empty: the ``all`` row, attribute ``all``.
    threshold : the decision is P(y=1) >= threshold (the model's own, ``fixed``).
    min_cell : a metric from fewer rows of the kind it counts is missing
        (:func:`biaslab.fairness.metrics.group_report`).
    """
    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape != (len(probes), len(labels)):
        raise ValueError(f"logits: expected shape {(len(probes), len(labels))}, got "
                         f"{logits.shape}")
    decisions = (1.0 / (1.0 + np.exp(-logits)) >= threshold).astype(int)
    parts = []
    for (probe, strength), d in zip(probes, decisions, strict=True):
        for attribute, keys in (groups or {"all": np.full(len(labels), "all")}).items():
            keys = np.asarray(keys, dtype=object)
            if len(set(keys)) < 2:  # group_report compares groups: the whole set alone
                per_group, between = _overall(labels, d, min_cell), pd.DataFrame(
                    {"metric": list(GAPS), "value": np.nan})
            else:
                per_group, between = group_report(labels, d, keys, n_boot=0, labelled=True,
                                                  name=attribute, min_cell=min_cell)
            parts.append(_rows_of(probe, strength, attribute, per_group, between))
    return pd.concat(parts, ignore_index=True)[list(COLUMNS)]


def robustness_figure(table: pd.DataFrame, attribute: str | None = None, title: str = ""):
    """Accuracy per group (top) and the gaps between groups (bottom) against each probe's
    strength, one column per probe. ``attribute``: the groups drawn (default: the first)."""
    from matplotlib.figure import Figure

    attribute = attribute if attribute is not None else table["attribute"].iloc[0]
    part = table[table["attribute"] == attribute]
    fig = Figure(figsize=(8.0, 5.2))
    axes = fig.subplots(2, len(PROBES), squeeze=False, sharey="row")
    for j, probe in enumerate(PROBES):
        rows = part[part["probe"] == probe]
        for group, g in rows.groupby("group", sort=True):
            axes[0, j].plot(g["strength"], g["accuracy"], marker="o",
                            linestyle="--" if group == "all" else "-", label=group)
        every = rows[rows["group"] == "all"]
        for gap in ("statistical_parity_difference", "equal_opportunity_difference",
                    "equalized_odds_difference"):
            axes[1, j].plot(every["strength"], every[gap], marker="o", label=gap.replace("_", " "))
        axes[1, j].axhline(0, color="0.6", linewidth=0.8)
        axes[1, j].set_xlabel("rotation (degrees)" if probe == "rotation"
                              else "noise (standard deviation)")
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel(f"gap between {attribute} groups")
    axes[0, -1].legend(fontsize=7)
    axes[1, -1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
