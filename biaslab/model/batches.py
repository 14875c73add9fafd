"""Batches as tensors: one split's rows, labels, bias and weights, and its model inputs.

Data stay in memory as uint8 (``pixels.npy`` memory-mapped once); each batch is assembled as a
tensor from them, or indexed from the split's inputs built once when they are small enough.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from biaslab.data.bias import BiasSpec, model_inputs
from biaslab.data.columns import require_columns
from biaslab.data.finding_names import LABEL_PREFIX

CACHE_BYTES = 1 << 30  # build a split's model inputs once when they fit in this many bytes


@dataclass
class TrainData:
    """One split as the loop sees it: rows of pixels.npy, 0/1 labels, the bias S (or None),
    sample weights (None: all 1), a group per row for per-group validation accuracy (None: S
    when there is one), and ``sampler``: use the weights through a weighted sampler (each epoch
    draws len(rows) rows with replacement, P(i) ∝ w_i, trained with unit weights) instead of
    as loss weights. With several ``findings``, ``labels`` is (N, K): one 0/1 column per
    finding, in their order; else (N,)."""

    rows: np.ndarray
    labels: np.ndarray
    s: np.ndarray | None
    weights: np.ndarray | None = None
    groups: np.ndarray | None = None
    sampler: bool = False
    findings: tuple[str, ...] = ()

    @classmethod
    def from_table(cls, table: pd.DataFrame, split: str, weights: str | None = None,
                   sampler: bool = False, findings: tuple[str, ...] = ()) -> TrainData:
        """The rows of ``table`` whose ``split`` column is ``split``.

        ``table`` has ``row``, ``label``, ``split`` and, when the bias was injected, ``s``;
        ``weights`` names its sample-weight column (None: all 1). ``findings``: several
        findings, whose labels are the columns ``label_F`` (``label`` is then not learnt).
        """
        labels = [LABEL_PREFIX + f for f in findings] or ["label"]
        require_columns(table, ["row", *labels, "split", *([weights] if weights else [])],
                        what=f"the {split} split's table")
        part = table[table["split"] == split]
        return cls(rows=part["row"].to_numpy(),
                   labels=part[labels].to_numpy() if findings else part["label"].to_numpy(),
                   s=part["s"].to_numpy() if "s" in part else None,
                   weights=part[weights].to_numpy() if weights else None, sampler=sampler,
                   findings=tuple(findings))

    def in_channels(self, bias: BiasSpec) -> int:
        """Model input channels: the image, and the bias channel when S was injected and
        ``bias`` shows it in one (``bias.channels``)."""
        return 1 if self.s is None else bias.channels


def cached_inputs(pixels: np.ndarray, data: TrainData, bias: BiasSpec) -> torch.Tensor | None:
    """All model inputs of ``data`` as one float tensor, or None when above CACHE_BYTES.

    Drawing each image's seeded noise costs more than a small model's step on a CPU, so small
    datasets draw it once per run; large ones assemble every batch from the uint8 pixels.
    """
    if len(data.rows) * data.in_channels(bias) * pixels[0].size * 4 > CACHE_BYTES:
        return None
    return torch.from_numpy(model_inputs(pixels, data.rows, data.s, bias))


def batches(pixels: np.ndarray, data: TrainData, bias: BiasSpec, size: int, order: np.ndarray,
            device: torch.device, cache: torch.Tensor | None = None,
            ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(idx, x)``: positions in ``data`` of each batch of ``order``, and their inputs
    (B, C, H, W) on ``device``, with S shown as ``bias`` says.

    ``cache``: the inputs of ``data`` from :func:`cached_inputs`, when already built.
    """
    pin = device.type == "cuda"  # pinned host memory lets the copy overlap the GPU's work
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        if cache is not None:
            x = cache[torch.from_numpy(idx)]
        else:
            s = None if data.s is None else data.s[idx]
            x = torch.from_numpy(model_inputs(pixels, data.rows[idx], s, bias))
        yield idx, (x.pin_memory() if pin else x).to(device, non_blocking=True)
