"""Model architectures. Every model maps (B, C, H, W) float inputs to (B,) logits of P(y=1)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head: fast on a CPU at 32x32, the default model.

    Global average pooling keeps it size-agnostic, so one model serves any ``prepare.size``.
    """

    def __init__(self, in_channels: int = 1, width: int = 16):
        super().__init__()

        def block(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
            layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
            layers.append(nn.ReLU(inplace=True))
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(
            *block(in_channels, width, pool=True),  # (B, w, H/2, W/2)
            *block(width, 2 * width, pool=True),  # (B, 2w, H/4, W/4)
            *block(2 * width, 4 * width, pool=False),  # (B, 4w, H/4, W/4)
            nn.AdaptiveAvgPool2d(1),  # (B, 4w, 1, 1)
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def build_model(name: str, in_channels: int, width: int = 16) -> nn.Module:
    """Build model ``name`` for ``in_channels`` input channels (1 gray, 2 with the bias channel)."""
    if name == "small_cnn":
        return SmallCNN(in_channels=in_channels, width=width)
    raise ValueError(f"train.model: unknown model {name!r}; allowed: small_cnn")
