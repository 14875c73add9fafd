"""Adversarial removal of the group from the representation, by gradient reversal (Ganin &
Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015; for bias, Kim et al.,
"Learning Not to Learn: Training Deep Neural Networks with Biased Data", CVPR 2019).

A small head a (the adversary) predicts the row's group g from the representation h = f(x)
through the gradient reversal layer R_λ; the model minimises::

    L = (1/B) Σ_i w_i [ℓ(c(h_i), y_i) + CE(a(R_λ(h_i)), g_i)]

so the adversary learns to find the group in h while the trunk f is pushed, with weight λ, to
make it unfindable, and the classifier c keeps predicting the label. The adversary is dropped
once trained: the saved model is f and c.
"""

from __future__ import annotations

import torch
from torch import nn

from biaslab.model.mitigation.heads import Trunk, final_linear, reverse_gradient


class _WithAdversary(nn.Module):
    """Trunk f, the model's own head c, and the adversary a."""

    def __init__(self, model: nn.Module, n_groups: int, hidden: int, weight: float):
        super().__init__()
        _, head = final_linear(model)
        self.trunk, self.head, self.weight = Trunk(model), head, weight
        self.in_channels = self.trunk.in_channels
        d = self.trunk.dim
        self.adversary = (nn.Linear(d, n_groups) if hidden == 0 else nn.Sequential(
            nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, n_groups)))

    def forward(self, x: torch.Tensor):
        """Logits (B,); in training mode also the adversary's group logits (B, G)."""
        h = self.trunk(x)
        logits = self.head(h).squeeze(1)
        if not self.training:
            return logits
        return logits, self.adversary(reverse_gradient(h, self.weight))


class Adversarial:
    """The adversarial method's hooks for :func:`biaslab.model.train.fit`.

    Parameters
    ----------
    n_groups : int
        G, the classes of the adversary (group codes 0..G-1).
    weight : float
        λ, the factor of the reversed gradient.
    hidden : int
        Hidden units of the adversary (0: a linear adversary).
    """

    def __init__(self, n_groups: int, *, weight: float = 0.1, hidden: int = 32):
        if n_groups < 2:
            raise ValueError(f"adversarial: needs at least 2 groups in the training split, got "
                             f"{n_groups} (weights.groups)")
        self.n_groups, self.weight, self.hidden = n_groups, weight, hidden

    def wrap(self, model: nn.Module) -> nn.Module:
        return _WithAdversary(model, self.n_groups, self.hidden, self.weight)

    def loss(self, net, x, y, w, g, loss_fn) -> torch.Tensor:
        logits, group_logits = net(x)
        adversary = nn.functional.cross_entropy(group_logits.float(), g, reduction="none")
        return ((loss_fn(logits.float(), y) + adversary) * w).mean()

    def export(self, module: _WithAdversary) -> nn.Module:
        return module.trunk.export(module.head)
