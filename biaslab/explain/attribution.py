"""Where a model looks: occlusion, deconvnet-style and Grad-CAM maps (captum), and the share of
the occlusion attribution that falls on the injected bias.

- **Occlusion** (Zeiler & Fergus 2014): a square window of the input is set to a baseline (the
  mean pixel of the test images in the image channel, as their grey square; 0, "no bias", in
  the noise channel) and the change of the model's output is credited to the pixels it
  covered, averaged over the windows covering each pixel. Channels are occluded one at a time,
  so the image and the noise channel each get their own map. All the windows of an image go
  through the model in batches (``perturbations_per_eval``): no Python loop over windows.
- **Deconvolution** (Zeiler & Fergus 2014) or **guided backpropagation** (Springenberg et al.
  2015): the gradient of the output with respect to the input, passed back through each ReLU by
  the rule of the method.
- **Grad-CAM** (Selvaraju et al. 2017): the last convolutional block's activations weighted by
  the mean gradient of the output in each channel, summed, kept where positive, and upsampled
  to the input's size.

Every map explains the logit of the model's own decision (+logit where it decided 1, -logit
where it decided 0), so a positive value is evidence *for* what the model decided: red in the
figures. The logit, not the probability, so that confident images still show their evidence.

The **bias share** is occlusion at the scale of the bias: the input is cut into tiles of the
bias region's size and alignment (:func:`region_tiles`: the noise channel and the image channel
are one tile each; a patch's grid of patch-sized squares), each tile is hidden in turn, and the
share is |change when hiding the bias| / sum of |changes| over all tiles (each weighted by its
pixels). It is 1 for a model that reads the bias alone, 0 for one that ignores it, and about the
region's own share of the input (``area``) for one that spreads its attention evenly. Why not the
maps' small windows: a model that reads a channel's noise level barely notices one 4x4 window of
noise (on the default data the share measured that way was 0.19 for the unweighted model and
0.18 for reweighing, against 0.56 and 0.29 at the scale of the channel).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# The layer Grad-CAM reads, per train.model: the output of the last convolutional block (after
# its ReLU), the last layer that still has a spatial layout.
GRADCAM_LAYERS = {
    "small_cnn": "features.10",
    "alexnet": "net.features.11",
    "resnet18": "net.layer4",
    "resnet34": "net.layer4",
    "resnet50": "net.layer4",
}
DECONV_METHODS = ("deconvolution", "guided_backprop")


def gradcam_layer(model: nn.Module, model_name: str) -> nn.Module:
    """The module Grad-CAM reads in ``model``, a ``model_name`` built by
    :mod:`biaslab.model.architectures`."""
    if model_name not in GRADCAM_LAYERS:
        raise ValueError(f"train.model: no Grad-CAM layer known for {model_name!r}; known: "
                         f"{', '.join(GRADCAM_LAYERS)}")
    modules = dict(model.named_modules())
    name = GRADCAM_LAYERS[model_name]
    if name not in modules:
        raise ValueError(f"train.model = {model_name}: the model has no layer {name!r} (a "
                         "model built by another version?)")
    return modules[name]


def occlusion_geometry(height: int, width: int, window: float, stride: float,
                       ) -> tuple[int, int]:
    """Window and stride in pixels from their shares of the image side (at least 1 pixel).

    The shorter side sets the scale: 0.125 and 0.0625 give a 4-pixel window moved by 2 at 32x32,
    32 by 16 at 256x256, so that the number of windows does not depend on the image size.
    """
    side = min(height, width)
    if not (0 < window <= 1 and 0 < stride <= 1):
        raise ValueError(f"explain.occlusion_window and occlusion_stride: expected fractions in "
                         f"(0, 1], got {window} and {stride}")
    return max(1, round(window * side)), max(1, round(stride * side))


def n_windows(shape: tuple[int, int, int], window: int, stride: int) -> int:
    """Occluded copies of one (C, H, W) input: C x the positions of the window."""
    channels, height, width = shape
    return channels * ((height - window) // stride + 1) * ((width - window) // stride + 1)


@dataclass(frozen=True)
class Maps:
    """Attribution maps of N inputs (N, C, H, W): ``occlusion`` and ``deconv`` per channel,
    ``gradcam`` per pixel (N, H, W), all towards the model's decision. ``deconv`` and
    ``gradcam`` are None for a model that cannot be hooked (an ONNX or TorchScript file)."""

    occlusion: np.ndarray
    deconv: np.ndarray | None = None
    gradcam: np.ndarray | None = None


class _Toward(nn.Module):
    """The model's logit signed towards a decision per image: +logit for 1, -logit for 0.

    A module (not a lambda) so that captum sees the model's layers and ReLUs inside it.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        return self.model(x) * sign


def _signs(decisions, n: int, device) -> torch.Tensor:
    if decisions is None:
        return torch.ones(n, device=device)
    d = np.asarray(decisions)
    if d.shape != (n,) or not np.isin(d, (0, 1)).all():
        raise ValueError(f"decisions: expected {n} values in {{0, 1}}, got shape {d.shape}")
    return torch.as_tensor(2.0 * d - 1.0, dtype=torch.float32, device=device)


def _fill(baseline, x: torch.Tensor) -> torch.Tensor:
    """The baseline as a (1, C, H, W) tensor: one value, or one per channel."""
    fill = torch.as_tensor(baseline, dtype=torch.float32).reshape(-1)
    if len(fill) not in (1, x.shape[1]):
        raise ValueError(f"baseline: expected one value or one per channel ({x.shape[1]}), got "
                         f"{len(fill)}")
    return fill.expand(x.shape[1])[None, :, None, None].expand(1, *x.shape[1:])


def occlusion(model: nn.Module, x, *, window: int, stride: int, baseline=0.0,
              decisions=None, origin: tuple[int, int] = (0, 0), batch_size: int = 512,
              device: str | torch.device = "cpu") -> np.ndarray:
    """Occlusion attribution of each input x (N, C, H, W), per channel: (N, C, H, W) float32.

    ``window`` x ``window`` squares of one channel, moved by ``stride`` pixels, set to
    ``baseline``: one value, or one per channel (e.g. the image's mean pixel, and 0 for the
    noise channel). The grid of windows has a window's top-left corner at pixel ``origin``
    (row, column): put it on a patch's corner so that one window hides the whole patch. A grid
    that straddles the patch only ever hides part of it, and a model reading "a white square
    there" still sees what is left (the default task's patch, at row 27, was never wholly
    hidden by windows at even rows, and its maps barely showed it). Forward passes hold about
    ``batch_size`` occluded copies: several images with all their windows at once for small
    inputs, one image in several passes for large ones.
    """
    from captum.attr import Occlusion

    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() != 4:
        raise ValueError(f"inputs: expected images (N, C, H, W), got shape {tuple(x.shape)}")
    height, width = x.shape[2:]
    if window > min(height, width) or window < 1 or stride < 1:
        raise ValueError(f"occlusion: window {window} and stride {stride} pixels do not fit "
                         f"{height}x{width} images")
    if not (0 <= origin[0] < height and 0 <= origin[1] < width):
        raise ValueError(f"occlusion: origin {tuple(origin)} is outside the {height}x{width} "
                         "images")
    if batch_size < 1:
        raise ValueError(f"explain.batch_size: expected an integer >= 1, got {batch_size}")
    # captum starts its grid at the top-left corner: pad the input there so that the grid
    # passes through ``origin``, and at the bottom-right so that its last windows reach the
    # edges; the model sees the input cropped back, so a window over padding hides only the
    # pixels of the input it covers
    pad = [(-o) % stride for o in origin]
    pad += [(-(side + p - window)) % stride for side, p in zip((height, width), pad, strict=True)]
    top, left, bottom, right = pad
    padded = nn.functional.pad(x, (left, right, top, bottom))
    explainer = Occlusion(_Cropped(_Toward(model.eval()), top, left, height, width).to(device))
    out = _perturbed(explainer, padded, n_windows(tuple(padded.shape[1:]), window, stride),
                     decisions, batch_size, device, sliding_window_shapes=(1, window, window),
                     strides=(1, stride, stride),
                     baselines=_fill(baseline, padded).to(device))
    return np.ascontiguousarray(out[:, :, top:top + height, left:left + width])


class _Cropped(nn.Module):
    """``inner`` on the (height x width) input inside a padded one."""

    def __init__(self, inner: nn.Module, top: int, left: int, height: int, width: int):
        super().__init__()
        self.inner, self.box = inner, (top, left, height, width)

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        top, left, height, width = self.box
        return self.inner(x[..., top:top + height, left:left + width], *args)


def _perturbed(explainer, x: torch.Tensor, per_image: int, decisions, batch_size: int,
               device, **options) -> np.ndarray:
    """``explainer.attribute`` (a captum perturbation method making ``per_image`` perturbed
    copies of each input) over ``x``: as many inputs per call as ``batch_size`` copies hold,
    every copy of an input in as few forward passes as ``batch_size`` allows."""
    images = max(1, batch_size // per_image)  # images per call
    per_eval = min(per_image, batch_size)  # perturbed copies of each image per forward pass
    signs = _signs(decisions, len(x), device)
    out = []
    for start in range(0, len(x), images):
        out.append(explainer.attribute(
            x[start:start + images].to(device),
            additional_forward_args=(signs[start:start + images],),
            perturbations_per_eval=per_eval, **options).detach().float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(tuple(x.shape), np.float32)


def deconv(model: nn.Module, x, *, method: str = "deconvolution", decisions=None,
           batch_size: int = 512, device: str | torch.device = "cpu") -> np.ndarray:
    """Deconvolution or guided-backpropagation map of each input: (N, C, H, W) float32."""
    from captum.attr import Deconvolution, GuidedBackprop

    if method not in DECONV_METHODS:
        raise ValueError(f"explain.deconv: expected one of {', '.join(DECONV_METHODS)}, got "
                         f"{method!r}")
    x = torch.as_tensor(x, dtype=torch.float32)
    signs = _signs(decisions, len(x), device)
    kind = Deconvolution if method == "deconvolution" else GuidedBackprop
    explainer = kind(_Toward(model.eval()).to(device))
    out = []
    with warnings.catch_warnings():  # captum says it hooks the ReLUs, every time
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        for start in range(0, len(x), batch_size):
            part = x[start:start + batch_size].to(device).requires_grad_()
            out.append(explainer.attribute(
                part, additional_forward_args=(signs[start:start + batch_size],))
                .detach().float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(tuple(x.shape), np.float32)


def gradcam(model: nn.Module, layer: nn.Module, x, *, decisions=None, batch_size: int = 512,
            device: str | torch.device = "cpu") -> np.ndarray:
    """Grad-CAM of each input at ``layer``, upsampled (bilinear) to the input: (N, H, W)."""
    from captum.attr import LayerAttribution, LayerGradCam

    x = torch.as_tensor(x, dtype=torch.float32)
    signs = _signs(decisions, len(x), device)
    explainer = LayerGradCam(_Toward(model.eval()).to(device), layer)
    out = []
    for start in range(0, len(x), batch_size):
        part = x[start:start + batch_size].to(device)
        cam = explainer.attribute(part, additional_forward_args=(signs[start:start + batch_size],),
                                  relu_attributions=True)  # (B, 1, h, w)
        cam = LayerAttribution.interpolate(cam.detach().float(), tuple(x.shape[2:]), "bilinear")
        out.append(cam[:, 0].cpu())
    return torch.cat(out).numpy() if out else np.zeros((len(x), *x.shape[2:]), np.float32)


def region_tiles(mask: np.ndarray) -> np.ndarray:
    """Tile ids (C, H, W) int64 that cut the input into pieces of the bias region's size, the
    region being one of them.

    A channel that the mask fills (the noise channel), or that it misses while it fills
    another, is one tile. Otherwise the channel is cut into squares of the mask's bounding box
    (in that channel), aligned on it, partial at the edges: the patch is one tile, its
    neighbours others.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3 or not mask.any():
        raise ValueError(f"mask: expected a bool (C, H, W) with a region, got shape {mask.shape}")
    channels, height, width = mask.shape
    whole = [mask[c].all() for c in range(channels)]
    ids, next_id = np.zeros(mask.shape, dtype=np.int64), 0
    for c in range(channels):
        if whole[c] or (not mask[c].any() and any(whole)):
            ids[c], next_id = next_id, next_id + 1
            continue
        inside = mask[c] if mask[c].any() else mask.any(axis=0)
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        r = (np.arange(height) - rows[0] % h) // h + 1  # the first, partial row of tiles is 0
        q = (np.arange(width) - cols[0] % w) // w + 1
        ids[c] = next_id + r[:, None] * (q.max() + 1) + q[None, :]
        next_id = ids[c].max() + 1
    return ids


def region_occlusion(model: nn.Module, x, mask: np.ndarray, *, baseline=0.0, decisions=None,
                     batch_size: int = 512, device: str | torch.device = "cpu") -> np.ndarray:
    """Occlusion by the tiles of :func:`region_tiles`: (N, C, H, W), each pixel the change of
    the decision's logit when its tile is hidden under ``baseline`` (one value or one per
    channel)."""
    from captum.attr import FeatureAblation

    x = torch.as_tensor(x, dtype=torch.float32)
    tiles = torch.from_numpy(region_tiles(mask))[None].to(device)  # (1, C, H, W)
    if tuple(tiles.shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(f"mask: expected the shape of one input {tuple(x.shape[1:])}, got "
                         f"{tuple(tiles.shape[1:])} (a mask for another bias.kind or size?)")
    explainer = FeatureAblation(_Toward(model.eval()).to(device))
    return _perturbed(explainer, x, int(tiles.max()) + 1, decisions, batch_size, device,
                      baselines=_fill(baseline, x).to(device), feature_mask=tiles)


def bias_share(attribution: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of each input's absolute attribution on ``mask``: (N,), NaN where it is all 0.

    ``attribution`` (N, C, H, W); ``mask`` bool (C, H, W), e.g.
    :meth:`biaslab.data.bias.BiasSpec.mask`.
    """
    attribution, mask = np.abs(np.asarray(attribution)), np.asarray(mask, dtype=bool)
    if attribution.ndim != 4 or attribution.shape[1:] != mask.shape:
        raise ValueError(f"mask: expected the shape of one input {attribution.shape[1:]}, got "
                         f"{mask.shape} (a mask for another bias.kind or image size?)")
    flat = attribution.reshape(len(attribution), mask.size).astype(np.float64)
    total = flat.sum(axis=1)
    on = flat[:, mask.reshape(-1)].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, on / total, np.nan)


def _box(mask: np.ndarray | None) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of the mask's pixels in the image channel, or None."""
    if mask is None or not np.asarray(mask)[0].any():
        return None
    rows, cols = np.flatnonzero(mask[0].any(axis=1)), np.flatnonzero(mask[0].any(axis=0))
    return rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def region_origin(mask: np.ndarray | None) -> tuple[int, int]:
    """The top-left pixel (row, column) of a patch (``mask`` on the image channel), for
    :func:`occlusion`'s ``origin``; (0, 0) without one (a noise channel fills its channel)."""
    box = _box(mask)
    return (0, 0) if box is None else (int(box[0]), int(box[1]))


def _overlay(cmap: str, values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """RGBA image of ``values`` in ``cmap`` over [lo, hi], opaque in proportion to |value|: the
    image shows through where the attribution is small."""
    from matplotlib import colormaps

    values = np.asarray(values, dtype=np.float64)
    rgba = colormaps[cmap]((values - lo) / (hi - lo))
    rgba[..., 3] = 0.85 * np.clip(np.abs(values) / max(abs(lo), abs(hi)), 0, 1)
    return rgba


def maps_figure(x: np.ndarray, maps: Maps, titles: list[str], *, mask: np.ndarray | None = None,
                deconv_name: str = "deconvolution"):
    """One row per input: the input, then its maps drawn over the image (matplotlib Figure).

    Columns: the image; the noise channel (2-channel inputs); occlusion of the image; occlusion
    of the noise channel (2 channels); |deconv| of the image, on black (it draws the image's
    own edges); Grad-CAM (the last two left out when ``maps`` has none). Occlusion is red where
    hiding the pixels weakens the model's decision, blue where it strengthens it, on one scale
    per row (both channels alike). The patch of a ``patch`` bias (``mask`` on channel 0) is
    outlined in green. ``titles``: one per row, drawn at its left.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    x = np.asarray(x)
    n, channels = x.shape[:2]
    if len(titles) != n:
        raise ValueError(f"titles: expected {n}, one per input, got {len(titles)}")
    two = channels > 1
    hooked = [maps.deconv is not None, maps.gradcam is not None]  # their columns, when drawn
    names = ["image"] + (["noise channel"] if two else []) + ["occlusion"] + (
        ["occlusion (noise ch.)"] if two else []) + [deconv_name.replace("_", " ")] * hooked[0] \
        + ["Grad-CAM"] * hooked[1]
    fig = Figure(figsize=(1.25 * len(names) + 1.3, 1.3 * max(n, 1) + 0.3))
    axes = fig.subplots(max(n, 1), len(names), squeeze=False)
    fig.subplots_adjust(left=1.3 / fig.get_figwidth(), right=0.99,
                        top=1 - 0.3 / fig.get_figheight(), bottom=0.01, wspace=0.05, hspace=0.08)
    box = _box(mask)
    for i in range(n):
        image = x[i, 0]
        occ = maps.occlusion[i]
        scale = float(np.abs(occ).max()) or 1.0
        # (background, its range, overlay): the noise channel is N(0, 1) where S=1
        panels = [(image, 1, None)] + ([(x[i, 1], 3, None)] if two else []) + [
            (image, 1, ("bwr", occ[0], -scale, scale))] + (
            [(x[i, 1], 3, ("bwr", occ[1], -scale, scale))] if two else [])
        if hooked[0]:
            dec = np.abs(maps.deconv[i, 0])
            panels.append((np.full_like(image, -1.0), 1,  # alone: it draws the image's edges
                           ("hot", dec, 0, float(dec.max()) or 1.0)))
        if hooked[1]:
            cam = maps.gradcam[i]
            panels.append((image, 1, ("jet", cam, 0, float(cam.max()) or 1.0)))
        for j, (ax, (base, span, over)) in enumerate(zip(axes[i], panels, strict=True)):
            ax.imshow(base, cmap="gray", vmin=-span, vmax=span)
            if over is not None:
                ax.imshow(_overlay(*over))
            if box is not None:  # a patch: one channel, the image
                ax.add_patch(Rectangle((box[1] - 0.5, box[0] - 0.5), box[3], box[2], fill=False,
                                       edgecolor="lime", linewidth=0.8))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(names[j], fontsize=7)
        axes[i, 0].text(-0.08, 0.5, titles[i], transform=axes[i, 0].transAxes, ha="right",
                        va="center", fontsize=6.5)
    return fig
