"""Domain-independent training (Wang et al., "Towards Fairness in Visual Recognition: Effective
Strategies for Bias Mitigation", CVPR 2020): one classifier head per group on a shared
representation, each trained on its group's rows only, and inference by the sum of the heads.

With h = f(x) and z_g(x) = w_g · h + b_g the logit of head g, a row of group g trains head g::

    L = (1/B) Σ_i w_i ℓ(z_{g_i}(x_i), y_i),        inference: z(x) = Σ_g z_g(x)

(their "sum of logits" inference, which does not need the group at test time). The sum of
linear heads is one linear head, w = Σ_g w_g, b = Σ_g b_g: that is the head of the saved model,
exactly, so predict needs no group either.
"""

from __future__ import annotations

import torch
from torch import nn

from biaslab.model.mitigation.heads import Trunk


class _WithHeads(nn.Module):
    """Trunk f and one head per group."""

    def __init__(self, model: nn.Module, n_groups: int):
        super().__init__()
        self.trunk = Trunk(model)
        self.in_channels = self.trunk.in_channels
        self.heads = nn.Linear(self.trunk.dim, n_groups)  # row g: the head of group g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every head's logit (B, G) in training mode; their sum (B,) in eval mode."""
        z = self.heads(self.trunk(x))
        return z if self.training else z.sum(1)


class DomainIndependent:
    """Domain-independent training's hooks for :func:`biaslab.model.train.fit`.

    Parameters
    ----------
    n_groups : int
        G, the heads (group codes 0..G-1).
    """

    def __init__(self, n_groups: int):
        if n_groups < 1:
            raise ValueError(f"domain_independent: needs a group, got {n_groups}")
        self.n_groups = n_groups

    def wrap(self, model: nn.Module) -> nn.Module:
        return _WithHeads(model, self.n_groups)

    def loss(self, net, x, y, w, g, loss_fn) -> torch.Tensor:
        z = net(x).float()
        own = z.gather(1, g[:, None]).squeeze(1)  # each row's logit from its group's head
        return (loss_fn(own, y) * w).mean()

    def export(self, module: _WithHeads) -> nn.Module:
        heads = module.heads
        merged = nn.Linear(heads.in_features, 1)
        with torch.no_grad():
            merged.weight.copy_(heads.weight.sum(0, keepdim=True))
            merged.bias.copy_(heads.bias.sum(0, keepdim=True))
        return module.trunk.export(merged)
