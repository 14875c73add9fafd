"""The training loop: weighted binary cross-entropy, per-epoch curves, best-on-validation model."""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from biaslab.bias import model_inputs
from biaslab.config import TrainConfig
from biaslab.models import build_model


@dataclass
class TrainData:
    """What the loop needs of one split: rows of pixels.npy, labels, bias (or None), weights."""

    rows: np.ndarray
    labels: np.ndarray
    s: np.ndarray | None
    weights: np.ndarray | None = None


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(device)


def _batches(pixels, data: TrainData, bias_seed: int, size: int, order: np.ndarray):
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        s = None if data.s is None else data.s[idx]
        x = torch.from_numpy(model_inputs(pixels, data.rows[idx], s, bias_seed))
        yield idx, x


@torch.no_grad()
def predict_logits(model, pixels, data: TrainData, bias_seed: int, batch_size: int, device):
    """Logits of every row of ``data``, in order, with the model in eval mode."""
    model.eval()
    out = []
    for _, x in _batches(pixels, data, bias_seed, batch_size, np.arange(len(data.rows))):
        out.append(model(x.to(device)).float().cpu())
    return torch.cat(out).numpy() if out else np.empty(0, dtype=np.float32)


def _scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Unweighted loss, accuracy and balanced accuracy at threshold 0.5."""
    t_logits, t_labels = torch.from_numpy(logits), torch.from_numpy(labels.astype(np.float32))
    loss = nn.functional.binary_cross_entropy_with_logits(t_logits, t_labels).item()
    pred = logits > 0
    recalls = [np.mean(pred[labels == c] == c) for c in (0, 1) if np.any(labels == c)]
    return {"loss": loss, "acc": float(np.mean(pred == labels)), "bacc": float(np.mean(recalls))}


def fit(
    pixels: np.ndarray,
    train: TrainData,
    val: TrainData,
    config: TrainConfig,
    bias_seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``config.model`` on ``train``; keep the epoch with the lowest validation loss.

    Returns the model (on the CPU, eval mode) and the per-epoch curves: ``epoch``,
    ``train_loss`` (weighted), ``train_acc``, ``val_loss``, ``val_acc``, ``val_bacc``,
    ``img_per_s``.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device(config.device)
    in_channels = 1 if train.s is None else 2
    model = build_model(config.model, in_channels, config.width).to(device)
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[config.optimizer]
    extra = {"momentum": 0.9} if config.optimizer == "sgd" else {}
    optimizer = opt_cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **extra)
    weights = np.ones(len(train.rows)) if train.weights is None else train.weights
    rng = np.random.default_rng(config.seed)
    best, best_loss, history = None, np.inf, []
    for epoch in range(1, config.epochs + 1):
        # train one epoch on a seeded shuffle
        model.train()
        t0, total, n_seen = time.perf_counter(), 0.0, 0
        order = rng.permutation(len(train.rows))
        for idx, x in _batches(pixels, train, bias_seed, config.batch_size, order):
            y = torch.from_numpy(train.labels[idx].astype(np.float32)).to(device)
            w = torch.from_numpy(weights[idx].astype(np.float32)).to(device)
            losses = nn.functional.binary_cross_entropy_with_logits(
                model(x.to(device)), y, reduction="none"
            )
            loss = (losses * w).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            n_seen += len(idx)
        speed = n_seen / (time.perf_counter() - t0)
        # evaluate: curves on train and val, keep the best model on validation loss
        tr = _scores(predict_logits(model, pixels, train, bias_seed, 256, device), train.labels)
        va = _scores(predict_logits(model, pixels, val, bias_seed, 256, device), val.labels)
        history.append(
            {"epoch": epoch, "train_loss": total / n_seen, "train_acc": tr["acc"],
             "val_loss": va["loss"], "val_acc": va["acc"], "val_bacc": va["bacc"],
             "img_per_s": speed}
        )
        if va["loss"] < best_loss:
            best_loss, best = va["loss"], copy.deepcopy(model.state_dict())
        log(f"epoch {epoch}/{config.epochs}  train_loss {total / n_seen:.4f}  "
            f"val_loss {va['loss']:.4f}  val_acc {va['acc']:.3f}  {speed:.0f} img/s")
    model.load_state_dict(best)
    return model.cpu().eval(), pd.DataFrame(history)


def save_checkpoint(model: nn.Module, config: TrainConfig, in_channels: int, path) -> None:
    """Save the model with the config that built it, so predict needs nothing else."""
    torch.save(
        {"model": model.state_dict(), "config": asdict(config), "in_channels": in_channels}, path
    )


def load_checkpoint(path) -> tuple[nn.Module, TrainConfig]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    config = TrainConfig(**ckpt["config"])
    model = build_model(config.model, ckpt["in_channels"], config.width)
    model.load_state_dict(ckpt["model"])
    return model.eval(), config
