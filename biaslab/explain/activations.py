"""Activations of a model's hidden layers: what the activation signatures cluster.

Forward hooks read each chosen layer's output for every image, pooled to one number per
channel (:func:`layer_activations`); with ``explain.layers: []`` the layers are each model's
defaults (:func:`default_layers`). The clustering of these activations is
:mod:`biaslab.explain.signatures`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

# Module names of each model's default layers (``explain.layers: []``), as build_model builds
# them. small_cnn: the output of conv blocks 1 and 2 (after pooling), then ``features``, block
# 3 globally pooled: the penultimate layer, the features the head reads. resnets: the four
# stages (layer4 pooled is the penultimate layer). alexnet: its three pooling blocks and the
# penultimate fully connected layer.
_RESNET = ("net.layer1", "net.layer2", "net.layer3", "net.layer4")
DEFAULT_LAYERS: dict[str, tuple[str, ...]] = {
    "small_cnn": ("features.3", "features.7", "features"),
    "alexnet": ("net.features.2", "net.features.5", "net.features.12", "net.classifier.5"),
    "resnet18": _RESNET,
    "resnet34": _RESNET,
    "resnet50": _RESNET,
}


def default_layers(model_name: str) -> list[str]:
    """The layers clustered when ``explain.layers`` is empty, for model ``model_name``."""
    if model_name not in DEFAULT_LAYERS:
        raise ValueError(f"train.model: no default explain.layers for {model_name!r}; known: "
                         f"{', '.join(DEFAULT_LAYERS)}; list the layers in explain.layers")
    return list(DEFAULT_LAYERS[model_name])


def _pooled(output) -> torch.Tensor:
    """(B, F) features of one layer's output: conv maps (B, C, H, W) averaged over H and W.

    Global average pooling keeps one number per channel: it is what small_cnn's and the
    resnets' heads read, it does not depend on the image size, and it keeps k-means in a few
    hundred dimensions instead of C x H x W (16 x 16 x 16 = 4,096 for small_cnn's first block
    at 32x32, millions for a resnet at 256x256). What it loses is *where* a channel fires; the
    attribution maps show that.
    """
    if isinstance(output, tuple | list):
        output = output[0]
    out = output.detach().float()  # float: bf16 under autocast would round the means
    return out.mean(dim=(2, 3)) if out.dim() == 4 else out.flatten(1)


def _batches(inputs, batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(inputs, np.ndarray | torch.Tensor):
        x = torch.as_tensor(inputs)
        if x.dim() != 4:
            raise ValueError(f"inputs: expected images (N, C, H, W), got shape {tuple(x.shape)}")
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size]
    else:
        for x in inputs:
            yield torch.as_tensor(x)


@torch.no_grad()
def layer_activations(model: nn.Module, inputs: np.ndarray | torch.Tensor | Iterable,
                      layers: Sequence[str], batch_size: int = 256,
                      device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Each layer's activations of every input image, read by forward hooks.

    Parameters
    ----------
    model : the model, on ``device``; put in eval mode for the pass, its mode restored after.
    inputs : images (N, C, H, W) as an array or tensor, batched by ``batch_size``; or an
        iterable of (B, C, H, W) tensors (e.g. from :func:`biaslab.model.batches.batches`).
    layers : module names of ``model`` (``dict(model.named_modules())``'s keys).
    batch_size : images per forward pass (inputs given whole only).
    device : where the batches are sent.

    Returns
    -------
    dict
        ``{layer: (N, F) float32 array}`` in the order of ``layers``: conv maps (B, C, H, W)
        are averaged over H and W (F = C), other outputs flattened.
    """
    layers = list(layers)
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"explain.layers: expected distinct layer names, got {layers}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size}")
    modules = dict(model.named_modules())
    for name in layers:
        if name not in modules or not name:
            known = [n for n in modules if n]
            raise ValueError(
                f"explain.layers: {name!r} is not a layer of this {type(model).__name__}; "
                f"allowed: module names such as {', '.join(known[:12])}"
                + (f" ... ({len(known)} in all)" if len(known) > 12 else ""))
    found: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def keep(name: str):
        # pooled at once, inside the hook: a later in-place ReLU would change the output
        return lambda module, args, output: found[name].append(_pooled(output).cpu())

    handles = [modules[name].register_forward_hook(keep(name)) for name in layers]
    training = model.training
    model.eval()
    try:
        for x in _batches(inputs, batch_size):
            model(x.to(device, dtype=torch.float32))
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return {name: (torch.cat(parts).numpy() if parts else np.empty((0, 0), np.float32))
            for name, parts in found.items()}
