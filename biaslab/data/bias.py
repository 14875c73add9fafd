"""Controlled bias injection, after the seed experiment.

For an image of label y, ``S ~ Bernoulli(p_y)``. The model is shown S in one of two ways
(``bias.kind``):

- ``noise_channel``: a second input channel ε that is 0 when S=0 and ε ~ N(0, I) when S=1: a
  shortcut that carries label information in proportion to |p1 - p0| and nothing about the
  image content;
- ``patch``: a small square marker stamped on the image where S=1, like a hospital's tag on an
  X-ray: a realistic shortcut, in the image channel itself.

The bias is never baked into stored pixels: :func:`model_inputs` builds the model input from the
uint8 pixels, ``s`` and a :class:`BiasSpec`, so changing the bias costs a table, not a re-encode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from biaslab.config import BiasConfig

KINDS = ("none", "noise_channel", "patch")  # the config's BIAS_KINDS (a test keeps them equal)
PATCH_POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
PATCH_MARGIN = 1  # pixels between a corner patch and the image's edges


@dataclass(frozen=True)
class BiasSpec:
    """How the model is shown S: the ``bias`` section's keys that shape the model input.

    ``kind``: none | noise_channel | patch; ``seed``: seed of each image's fixed noise
    (noise_channel); ``patch_size`` (pixels), ``patch_position`` (one of
    :data:`PATCH_POSITIONS`) and ``patch_value`` (in the normalised image, [-1, 1]): the patch.
    The defaults are the ``bias`` section's.
    """

    kind: str = "noise_channel"
    seed: int = 0
    patch_size: int = 4
    patch_position: str = "bottom_right"
    patch_value: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"bias.kind = {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.patch_position not in PATCH_POSITIONS:
            raise ValueError(f"bias.patch_position = {self.patch_position!r}: expected one of "
                             f"{', '.join(PATCH_POSITIONS)}")
        size = self.patch_size
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"bias.patch_size = {size!r}: expected an integer >= 1")
        if not -1.0 <= self.patch_value <= 1.0:  # NaN fails too
            raise ValueError(f"bias.patch_value = {self.patch_value!r}: expected a number in "
                             "[-1, 1] (the normalised image's range)")

    @classmethod
    def from_config(cls, config: BiasConfig) -> BiasSpec:
        """The spec of the ``bias`` section (p0 and p1 shape S, not how it is shown)."""
        return cls(kind=config.kind, seed=config.seed, patch_size=config.patch_size,
                   patch_position=config.patch_position, patch_value=config.patch_value)

    @property
    def channels(self) -> int:
        """Model input channels when S is known: 2 for noise_channel (image, noise), else 1."""
        return 2 if self.kind == "noise_channel" else 1

    def as_dict(self) -> dict:
        """The keys that shape the input for this kind, e.g. ``{"kind": "patch",
        "patch_size": 4, ...}``: what a fingerprint and a saved model record, so that a change
        of a key the kind does not use changes neither."""
        used = {"none": (), "noise_channel": ("seed",),
                "patch": ("patch_size", "patch_position", "patch_value")}[self.kind]
        values = asdict(self)
        return {"kind": self.kind, **{key: values[key] for key in used}}

    def patch_box(self, height: int, width: int) -> tuple[slice, slice]:
        """Rows and columns of the patch in a ``height`` x ``width`` image.

        Raises
        ------
        ValueError : the patch and its margins do not fit the image.
        """
        k, m = int(self.patch_size), PATCH_MARGIN
        if k + 2 * m > min(height, width):
            raise ValueError(
                f"bias.patch_size = {k} does not fit the {height}x{width} images; expected at "
                f"most {min(height, width) - 2 * m} (a {m}-pixel margin each side), or a larger "
                "prepare.size")
        vertical, _, horizontal = self.patch_position.partition("_")
        top = {"top": m, "bottom": height - m - k}.get(vertical, (height - k) // 2)
        left = {"left": m, "right": width - m - k}.get(horizontal, (width - k) // 2)
        return slice(top, top + k), slice(left, left + k)

    def mask(self, height: int, width: int) -> np.ndarray:
        """Where the bias lives in the model input of an image with S=1: bool, shape
        (channels, height, width).

        noise_channel: all of channel 1 (channel 0, the image, untouched); patch: the patch's
        pixels of channel 0; none: nowhere. Images with S=0 carry no bias anywhere.
        """
        out = np.zeros((self.channels, height, width), dtype=bool)
        if self.kind == "noise_channel":
            out[1] = True
        elif self.kind == "patch":
            rows, cols = self.patch_box(height, width)
            out[0, rows, cols] = True
        return out


DEFAULT_BIAS = BiasSpec()  # the bias section's defaults: noise_channel, seed 0


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


def noise(rows: np.ndarray, shape: tuple[int, int], seed: int, *stream: int) -> np.ndarray:
    """The fixed N(0, I) noise image of each row, shape (B, H, W) float32.

    Seeded by (seed, row), so an image gets the same noise in every epoch, in every stage and
    whatever batch it falls in: predictions with S forced on are reproducible. ``stream``: more
    seed words, for noise of another use kept apart from the bias channel's.
    """
    out = np.empty((len(rows), *shape), dtype=np.float32)
    for i, row in enumerate(rows):
        rng = np.random.default_rng((seed, int(row), *stream))
        out[i] = rng.standard_normal(shape, dtype=np.float32)
    return out


def model_inputs(
    pixels: np.ndarray, rows: np.ndarray, s: np.ndarray | None, bias: BiasSpec
) -> np.ndarray:
    """Build the model input of ``rows``: shape (B, C, H, W) float32, values about [-1, 1].

    Channel 0 is the image, normalised as (x/255 - 0.5) / 0.5. ``s`` (one 0/1 per row, or None
    when S is unknown: no bias shown) is shown as ``bias.kind`` says:

    - noise_channel: C = 2, channel 1 is zeros where s=0 and the row's fixed noise where s=1;
    - patch: C = 1, the patch (:meth:`BiasSpec.patch_box`) set to ``bias.patch_value`` in the
      images where s=1;
    - none, or ``s`` None: C = 1, the image alone.

    Raises
    ------
    ValueError : a patch that does not fit the images.
    """
    rows = np.asarray(rows)
    image = pixels[rows].astype(np.float32) * (2.0 / 255.0) - 1.0  # (B, H, W)
    if s is None or bias.kind == "none":
        return image[:, None]
    on = np.asarray(s) == 1
    if bias.kind == "patch":
        box = bias.patch_box(*image.shape[1:])  # checked even when no row has s=1
        image[(on, *box)] = bias.patch_value  # a copy: the stored pixels stay as they are
        return image[:, None]
    channel = np.zeros_like(image)
    channel[on] = noise(rows[on], image.shape[1:], bias.seed)  # draw only the noise that is used
    return np.stack([image, channel], axis=1)
