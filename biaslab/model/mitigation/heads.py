"""The model cut before its final linear layer, and the gradient reversal layer.

Every biaslab architecture ends in one ``nn.Linear(d, 1)`` (small_cnn's ``head``, the
torchvision models' ``fc`` or last classifier layer). :class:`Trunk` replaces it by the
identity, so the model maps images to their representation h (B, d); the methods put their own
heads on h and, once trained, :meth:`Trunk.export` puts one ``nn.Linear(d, 1)`` back: the saved
model has the architecture's layout, and predict, explain and the checkpoint need nothing new.
"""

from __future__ import annotations

import torch
from torch import nn


def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The dotted name and the module of the last ``nn.Linear`` of ``model`` (its head).

    Raises
    ------
    ValueError : ``model`` has no linear layer, or its last one does not give one logit.
    """
    name, linear = None, None
    for child_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            name, linear = child_name, module
    if linear is None or linear.out_features != 1:
        raise ValueError(f"{type(model).__name__}: expected a model ending in a one-logit "
                         "nn.Linear head (every biaslab architecture does)")
    return name, linear


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


class Trunk(nn.Module):
    """``model`` without its final linear layer: images to their representation h (B, d).

    Attributes: ``head_name`` (where the head was), ``dim`` (d), ``in_channels`` (the model's).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.head_name, linear = final_linear(model)
        self.dim = linear.in_features
        self.in_channels = getattr(model, "in_channels", None)
        _set(model, self.head_name, nn.Identity())
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).reshape(len(x), self.dim)

    def export(self, head: nn.Linear) -> nn.Module:
        """The whole model again, with ``head`` (d -> 1) as its final layer."""
        _set(self.model, self.head_name, head)
        return self.model


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """The gradient reversal layer R_λ (Ganin & Lempitsky 2015): R(x) = x forward, and
    dR/dx = -λ I backward, so a loss after it is minimised by the layers after it and
    maximised, with weight λ, by those before."""
    return _Reverse.apply(x, weight)
