"""Model architectures. Every model maps (B, C, H, W) float inputs to (B,) logits of P(y=1),
or with K > 1 outputs (several findings) to (B, K) logits, one per finding.

``small_cnn`` is the CPU default. The torchvision models (``alexnet``, ``resnet18/34/50``) are
for GPUs: their first convolution is rebuilt for 1 input channel (grayscale) or 2 (grayscale +
bias channel) and their head for the K logits (K sigmoid outputs: each finding is a binary
task of its own, an image can have several).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from biaslab.config import MODELS


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head: fast on a CPU at 32x32, the default model.

    Global average pooling keeps it size-agnostic, so one model serves any ``prepare.size``.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, outputs: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.outputs = outputs

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
        self.head = nn.Linear(4 * width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(x))
        return logits.squeeze(1) if self.outputs == 1 else logits


class _SingleLogit(nn.Module):
    """Wrap a torchvision classifier whose head was replaced by a K-output layer: (B,) logits
    for K = 1, (B, K) otherwise."""

    def __init__(self, net: nn.Module, in_channels: int, outputs: int = 1):
        super().__init__()
        self.net = net
        self.in_channels = in_channels
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return logits.squeeze(1) if self.outputs == 1 else logits


def _first_conv(net: nn.Module, name: str) -> tuple[nn.Module, str, nn.Conv2d]:
    """The module holding the first convolution, the attribute name, and the conv itself."""
    if name == "alexnet":
        return net.features, "0", net.features[0]
    return net, "conv1", net.conv1


def _rebuild_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs.

    Channel 0 (the image) gets the mean of the RGB filters, so pretrained filters still respond
    to the same patterns in gray; the bias channel starts at zero, so it must be learnt.
    """
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :1] = conv.weight.mean(dim=1, keepdim=True)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def load_torch_dict(path: str | Path, *, holds: str, expected: str, key: str = "") -> dict:
    """The dict that ``torch.save`` wrote to ``path``, or one ValueError naming the file.

    Loaded weights-only (tensors and plain containers: a file cannot run code) on the CPU. The
    error says what the file ``holds`` when it is not a dict (``holds a Tensor, not HOLDS``) and
    what it should have been (``expected``), after ``key``, the param that named the file.
    """
    where = f"{key}: {path}" if key else str(path)
    # torch.load fails by the bytes it meets: UnpicklingError (random bytes, a pickled model, a
    # Git LFS pointer), KeyError (a text file), RuntimeError (a truncated zip), EOFError (an
    # empty file), ...
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{where} is not readable by torch.load ({type(exc).__name__}); "
                         f"{expected}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{where} holds a {type(state).__name__}, not {holds}; {expected}")
    return state


def _torchvision(name: str, in_channels: int, pretrained: str | None, outputs: int = 1
                 ) -> nn.Module:
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    if pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(
                f"train.pretrained: {path} not found. biaslab never downloads weights: fetch "
                f"torchvision's ImageNet state dict for {name} on a machine with internet "
                f"(e.g. torchvision.models.{name}(weights='DEFAULT').state_dict(), saved with "
                f"torch.save) and put the file at {path}"
            )
        state = load_torch_dict(path, holds="a state dict", key="train.pretrained", expected=(
            f"expected a torchvision state dict saved with torch.save, e.g. torch.save("
            f"torchvision.models.{name}(weights='DEFAULT').state_dict(), '{path}')"))
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or len(missing) > 0:
            raise ValueError(
                f"train.pretrained: {path} does not fit {name}: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}"
            )
    parent, attr, conv = _first_conv(net, name)
    setattr(parent, attr, _rebuild_conv(conv, in_channels))
    if name == "alexnet":
        net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, outputs)
    else:
        net.fc = nn.Linear(net.fc.in_features, outputs)
    return _SingleLogit(net, in_channels, outputs)


def build_model(name: str, in_channels: int, width: int = 16,
                pretrained: str | None = None, outputs: int = 1) -> nn.Module:
    """Build model ``name`` for ``in_channels`` input channels (1 gray, 2 with the bias channel).

    ``width`` applies to ``small_cnn``; ``pretrained`` (a local state-dict file) to torchvision
    models only; ``outputs``: the logits per image, one per finding (1: (B,) logits, the
    single-label model; K > 1: (B, K)). The model keeps ``in_channels`` and ``outputs`` as
    attributes: a caller holding only the model (a loaded checkpoint) knows whether its inputs
    need the bias channel and how many findings it scores.
    """
    if name == "small_cnn":
        if pretrained:
            raise ValueError("train.pretrained: small_cnn has no pretrained weights; use null")
        return SmallCNN(in_channels=in_channels, width=width, outputs=outputs)
    if name in MODELS:
        return _torchvision(name, in_channels, pretrained, outputs)
    raise ValueError(f"train.model: unknown model {name!r}; allowed: {', '.join(MODELS)}")
