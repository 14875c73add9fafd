"""Where a model runs: the one reading of a ``device`` param (auto, cpu or cuda)."""

from __future__ import annotations

import torch


def pick_device(device: str, local_rank: int = 0, *, key: str = "train.device") -> torch.device:
    """``device`` (auto, cpu or cuda; the param ``key``) as a torch device; ``local_rank`` picks
    the GPU. cuda without a visible CUDA device is an error naming ``key``."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key} = 'cuda' but no CUDA device is visible; use auto or cpu")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)
