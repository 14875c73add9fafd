"""Controlled bias injection, after the seed experiment.

For an image of label y, ``S ~ Bernoulli(p_y)``. With ``noise_channel`` the model sees a second
input channel ε that is 0 when S=0 and ε ~ N(0, I) when S=1: a shortcut that carries label
information in proportion to |p1 - p0| and nothing about the image content.

The bias is never baked into stored pixels: :func:`model_inputs` builds the model input from the
uint8 pixels, ``s`` and a seed, so changing the bias costs a table, not a re-encode.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def draw_s(labels: np.ndarray, p0: float, p1: float, seed: int) -> np.ndarray:
    """Draw the bias variable S ~ Bernoulli(p_y) for each label y (0/1). Returns int8 0/1."""
    labels = np.asarray(labels)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels: expected only 0 and 1, got {np.unique(labels).tolist()}")
    rng = np.random.default_rng(seed)
    p = np.where(labels == 1, p1, p0)
    return (rng.random(len(labels)) < p).astype(np.int8)


def bias_table(index: pd.DataFrame, kind: str, p0: float, p1: float, seed: int) -> pd.DataFrame:
    """The ``bias`` artifact: ``row`` and, unless ``kind == 'none'``, ``s``."""
    table = pd.DataFrame({"row": index["row"].to_numpy()})
    if kind != "none":
        table["s"] = draw_s(index["label"].to_numpy(), p0, p1, seed)
    return table


def noise(rows: np.ndarray, shape: tuple[int, int], seed: int) -> np.ndarray:
    """The fixed N(0, I) noise image of each row, shape (B, H, W) float32.

    Seeded by (seed, row), so an image gets the same noise in every epoch, in every stage and
    whatever batch it falls in: predictions with S forced on are reproducible.
    """
    out = np.empty((len(rows), *shape), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i] = np.random.default_rng((seed, int(row))).standard_normal(shape, dtype=np.float32)
    return out


def model_inputs(
    pixels: np.ndarray, rows: np.ndarray, s: np.ndarray | None, seed: int
) -> np.ndarray:
    """Build the model input of ``rows``: shape (B, C, H, W) float32, values about [-1, 1].

    Channel 0 is the image, normalised as (x/255 - 0.5) / 0.5. When ``s`` is given (one 0/1 per
    row) channel 1 is the bias channel: zeros where s=0, the row's fixed noise where s=1.
    """
    rows = np.asarray(rows)
    image = pixels[rows].astype(np.float32) * (2.0 / 255.0) - 1.0  # (B, H, W)
    if s is None:
        return image[:, None]
    on = np.asarray(s) == 1
    channel = np.zeros_like(image)
    channel[on] = noise(rows[on], image.shape[1:], seed)  # draw only the noise that is used
    return np.stack([image, channel], axis=1)
