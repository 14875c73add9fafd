"""GroupDRO (Sagawa et al., "Distributionally Robust Neural Networks for Group Shifts", ICLR
2020): minimise the loss of the worst group rather than the average, through online weights.

With ℓ_g the mean loss of the batch's rows of group g (a cell: the group, or group x class),
each step moves the weights q (a distribution over the cells, uniform at first) and trains on
their mixture (Algorithm 1, with the generalisation adjustment of their section 3.3)::

    q_g <- q_g exp(η (ℓ_g + C / sqrt(n_g))),  q <- q / Σ_h q_h,   loss = Σ_g q_g ℓ_g

n_g: the training rows of cell g. A cell with no row in the batch has ℓ_g = 0 (as in the
authors' code). q is a buffer of the trained module: the resume checkpoint keeps it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class _WithWeights(nn.Module):
    """The model, unchanged, and the cells' weights q as a buffer."""

    def __init__(self, model: nn.Module, n_cells: int):
        super().__init__()
        self.model = model
        self.in_channels = getattr(model, "in_channels", None)
        self.register_buffer("q", torch.full((n_cells,), 1.0 / n_cells))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GroupDRO:
    """GroupDRO's hooks for :func:`biaslab.model.train.fit`.

    Parameters
    ----------
    counts : array of int
        n_g, training rows of each cell: group g (``by_class=False``) or cell 2 g + y.
    step_size : float
        η, the step of the weights.
    adjustment : float
        C, the generalisation adjustment (0: none).
    by_class : bool
        Cells are group x class rather than groups.
    """

    def __init__(self, counts, *, step_size: float = 0.01, adjustment: float = 0.0,
                 by_class: bool = False):
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or len(counts) == 0 or (counts <= 0).any():
            raise ValueError(f"groupdro: every cell needs training rows, got counts {counts}")
        self.adjust = torch.from_numpy(adjustment / np.sqrt(counts)).float()
        self.step_size, self.by_class = step_size, by_class
        self.module: _WithWeights | None = None

    @staticmethod
    def cells(groups: np.ndarray, labels: np.ndarray, by_class: bool) -> np.ndarray:
        """Cell of each row: its group code g, or 2 g + y with ``by_class``."""
        groups = np.asarray(groups, dtype=np.int64)
        return 2 * groups + np.asarray(labels, dtype=np.int64) if by_class else groups

    def wrap(self, model: nn.Module) -> nn.Module:
        self.module = _WithWeights(model, len(self.adjust))
        return self.module

    def group_losses(self, per_row: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """ℓ_g: the mean of ``per_row`` over each cell's rows (0 for a cell absent)."""
        n = len(self.adjust)
        sums = torch.zeros(n, device=per_row.device).index_add(0, cells, per_row)
        counts = torch.bincount(cells, minlength=n).clamp(min=1)
        return sums / counts

    def step(self, group_loss: torch.Tensor) -> torch.Tensor:
        """Move q on the batch's ℓ (no gradient through q) and return it."""
        q = self.module.q
        with torch.no_grad():
            adjusted = group_loss.detach() + self.adjust.to(q.device)
            q.mul_(torch.exp(self.step_size * adjusted))
            q.div_(q.sum())
        return q

    def loss(self, net, x, y, w, g, loss_fn) -> torch.Tensor:
        """Σ_g q_g ℓ_g after q's step, ℓ_g of the rows' weighted per-sample losses."""
        cells = 2 * g + y.long() if self.by_class else g
        group_loss = self.group_losses(loss_fn(net(x).float(), y) * w, cells)
        return (self.step(group_loss) * group_loss).sum()

    def export(self, module: _WithWeights) -> nn.Module:
        return module.model
