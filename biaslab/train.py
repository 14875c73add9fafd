"""The training loop: one function in commented phases, resumable, CPU, CUDA or DDP.

Data stay in memory as uint8 (``pixels.npy`` memory-mapped once); each batch is assembled and
augmented as a tensor. A checkpoint after every epoch (model, optimizer, scheduler, RNG states,
history) lets a killed run resume and end exactly as an uninterrupted one would on the same
device. Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel and
each process trains on its shard of every epoch's shuffle; on one process that is a no-op.
"""

from __future__ import annotations

import copy
import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from biaslab.bias import model_inputs
from biaslab.config import TrainConfig
from biaslab.io import write_bytes
from biaslab.models import build_model
from biaslab.weights import sample_order


@dataclass
class TrainData:
    """One split as the loop sees it: rows of pixels.npy, 0/1 labels, the bias S (or None),
    sample weights (None: all 1), a group per row for per-group validation accuracy (None: S
    when there is one), and ``sampler``: use the weights through a weighted sampler (each epoch
    draws len(rows) rows with replacement, P(i) ∝ w_i, trained with unit weights) instead of
    as loss weights."""

    rows: np.ndarray
    labels: np.ndarray
    s: np.ndarray | None
    weights: np.ndarray | None = None
    groups: np.ndarray | None = None
    sampler: bool = False


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device = 'cuda' but no CUDA device is visible; use auto or cpu")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random crop of the image padded by 1/8 of its side.

    Vectorised over the batch (no per-image Python loop); ``gen`` makes it reproducible.
    """
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None].to(x.device), x.flip(-1), x)
    pad = max(1, h // 8)
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def per_sample_loss(config: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """BCE, or focal loss FL = -α_t (1 - p_t)^γ log p_t (Lin et al. 2017), per sample."""

    def bce(logits, y):
        return nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")

    if config.loss == "bce":
        return bce

    def focal(logits, y):
        ce = bce(logits, y)
        p_t = torch.exp(-ce)  # probability given to the true class
        loss = (1 - p_t) ** config.focal_gamma * ce
        if config.focal_alpha is not None:
            loss = loss * (config.focal_alpha * y + (1 - config.focal_alpha) * (1 - y))
        return loss

    return focal


CACHE_BYTES = 1 << 30  # build a split's model inputs once when they fit in this many bytes


def cached_inputs(pixels, data: TrainData, bias_seed: int) -> torch.Tensor | None:
    """All model inputs of ``data`` as one float tensor, or None when above CACHE_BYTES.

    Drawing each image's seeded noise costs more than a small model's step on a CPU, so small
    datasets draw it once per run; large ones assemble every batch from the uint8 pixels.
    """
    channels = 1 if data.s is None else 2
    if len(data.rows) * channels * pixels[0].size * 4 > CACHE_BYTES:
        return None
    return torch.from_numpy(model_inputs(pixels, data.rows, data.s, bias_seed))


def _batches(pixels, data: TrainData, bias_seed: int, size: int, order: np.ndarray, device,
             cache: torch.Tensor | None = None):
    pin = device.type == "cuda"
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        if cache is not None:
            x = cache[torch.from_numpy(idx)]
        else:
            s = None if data.s is None else data.s[idx]
            x = torch.from_numpy(model_inputs(pixels, data.rows[idx], s, bias_seed))
        yield idx, (x.pin_memory() if pin else x).to(device, non_blocking=True)


@torch.no_grad()
def predict_logits(model, pixels, data: TrainData, bias_seed: int, batch_size: int, device,
                   amp: bool = False, cache: torch.Tensor | None = None):
    """Logits of every row of ``data``, in order, with the model in eval mode.

    ``cache``: the inputs of ``data`` from :func:`cached_inputs`, when already built.
    """
    device = torch.device(device)
    model.eval()
    out = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        for _, x in _batches(pixels, data, bias_seed, batch_size, np.arange(len(data.rows)),
                             device, cache):
            out.append(model(x).float().cpu())
    return torch.cat(out).numpy() if out else np.empty(0, dtype=np.float32)


def _scores(logits: np.ndarray, data: TrainData) -> dict[str, float]:
    """Unweighted loss, accuracy, balanced accuracy and per-group accuracy at threshold 0.5."""
    labels = data.labels
    t_logits, t_labels = torch.from_numpy(logits), torch.from_numpy(labels.astype(np.float32))
    loss = nn.functional.binary_cross_entropy_with_logits(t_logits, t_labels).item()
    correct = (logits > 0) == labels
    recalls = [correct[labels == c].mean() for c in (0, 1) if np.any(labels == c)]
    out = {"loss": loss, "acc": float(correct.mean()), "bacc": float(np.mean(recalls))}
    groups = data.groups if data.groups is not None else data.s
    if groups is not None:
        for g in np.unique(groups):
            out[f"acc_g{g}"] = float(correct[groups == g].mean())
    return out


class _Run:
    """Everything a resumed run must restore, and how to save it."""

    def __init__(self, model, optimizer, scheduler, config: TrainConfig):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.config = config
        self.rng = np.random.default_rng(config.seed)  # epoch shuffles
        self.gen = torch.Generator().manual_seed(config.seed)  # augmentation
        self.epoch, self.bad_epochs, self.history = 0, 0, []
        self.best, self.best_loss = None, np.inf

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "rng": self.rng.bit_generator.state, "gen": self.gen.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": self.epoch, "best": self.best,
                "best_loss": self.best_loss, "bad_epochs": self.bad_epochs,
                "history": self.history, "config": asdict(self.config)}

    def save(self, path: Path) -> None:
        _save(self.state(), path)

    def restore(self, path: Path, log) -> None:
        if not path.is_file():
            return
        # our own file, holding numpy RNG state and history: not a weights-only checkpoint
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["config"] != asdict(self.config):
            log(f"checkpoint {path} was made with other train params: starting afresh")
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        for key in ("epoch", "best", "best_loss", "bad_epochs", "history"):
            setattr(self, key, state[key])
        log(f"resuming from {path} after epoch {self.epoch}")


def _setup(config: TrainConfig, in_channels: int, device: torch.device):
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    model = build_model(config.model, in_channels, config.width, config.pretrained).to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                     weight_decay=config.weight_decay)
    scheduler = None
    if config.scheduler == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.step_gamma)
    return _Run(model, optimizer, scheduler, config)


def fit(
    pixels: np.ndarray,
    train: TrainData,
    val: TrainData,
    config: TrainConfig,
    bias_seed: int = 0,
    log: Callable[[str], None] | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``config.model`` on ``train``; keep the epoch with the lowest validation loss.

    Parameters
    ----------
    checkpoint : path, optional
        Where to save the run after every epoch; if the file exists (same train params), the
        run resumes from it.

    Returns
    -------
    model : the best model, on the CPU, in eval mode.
    curves : DataFrame, one row per epoch: ``epoch``, ``lr``, ``train_loss`` (weighted),
        ``train_acc``, ``val_loss``, ``val_acc``, ``val_bacc``, ``val_acc_gG`` per group G,
        ``img_per_s``.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", 0)))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    log = log if rank == 0 else (lambda msg: None)
    run = _setup(config, 1 if train.s is None else 2, device)
    if checkpoint is not None:
        run.restore(Path(checkpoint), log)
    net = run.model
    if world > 1:
        ids = None if device.type == "cpu" else [device.index]
        net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    compiled = torch.compile(net) if config.compile else net
    loss_fn = per_sample_loss(config)
    weights = np.ones(len(train.rows)) if train.weights is None else train.weights
    if train.sampler:  # the weights decide which rows are drawn, not what each row counts
        draw_p, weights = weights / weights.sum(), np.ones(len(train.rows))
    use_amp = config.amp and device.type == "cuda"
    # inputs built once per run, for training and for every epoch's evaluation passes
    cache = cached_inputs(pixels, train, bias_seed)
    val_cache = cached_inputs(pixels, val, bias_seed)

    def stalled() -> bool:
        return bool(config.patience) and run.bad_epochs >= config.patience

    while run.epoch < config.epochs and not stalled():
        # shuffle (same permutation on every process), then take this process's shard
        if train.sampler:
            order = sample_order(draw_p, len(train.rows), run.rng)
        else:
            order = run.rng.permutation(len(train.rows))
        order = np.resize(order, -(-len(order) // world) * world)[rank::world]
        net.train()
        t0, total, n_seen = time.perf_counter(), 0.0, 0
        quiet = True if rank != 0 else None  # None: a bar with img/s on a terminal only
        bar = tqdm(total=len(order), unit="img", file=sys.stderr, leave=False, disable=quiet,
                   desc=f"epoch {run.epoch + 1}/{config.epochs}")
        for idx, x in _batches(pixels, train, bias_seed, config.batch_size, order, device, cache):
            if config.augment:
                x = augment(x, run.gen)
            if device.type == "cuda" and config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(train.labels[idx].astype(np.float32)).to(device)
            w = torch.from_numpy(weights[idx].astype(np.float32)).to(device)
            # forward / backward: bf16 autocast on CUDA, full precision on the CPU
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = (loss_fn(compiled(x).float(), y) * w).mean()
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            total += loss.item() * len(idx)  # a CPU-GPU sync point, once per batch
            n_seen += len(idx)
            bar.update(len(idx))
        bar.close()
        speed = n_seen * world / (time.perf_counter() - t0)
        lr = run.optimizer.param_groups[0]["lr"]
        if run.scheduler:
            run.scheduler.step()
        if world > 1:
            # DDP syncs gradients, not BatchNorm statistics after the last forward: take rank 0's
            for buffer in run.model.buffers():
                dist.broadcast(buffer, src=0)
            # the weighted training loss over all processes
            # on the training device: NCCL reduces CUDA tensors only (gloo takes CPU ones)
            sums = torch.tensor([total, float(n_seen)], dtype=torch.float64, device=device)
            dist.all_reduce(sums)
            total, n_seen = sums[0].item(), int(sums[1].item())

        # evaluate on train and val; keep the best model on validation loss
        run.epoch += 1
        tr = _scores(predict_logits(run.model, pixels, train, bias_seed, 256, device, use_amp,
                                    cache), train)
        va = _scores(predict_logits(run.model, pixels, val, bias_seed, 256, device, use_amp,
                                    val_cache), val)
        row = {"epoch": run.epoch, "lr": lr, "train_loss": total / n_seen, "train_acc": tr["acc"],
               "val_loss": va["loss"], "val_acc": va["acc"], "val_bacc": va["bacc"],
               **{f"val_{k}": v for k, v in va.items() if k.startswith("acc_g")},
               "img_per_s": speed}
        run.history.append(row)
        if va["loss"] < run.best_loss:
            run.best_loss, run.bad_epochs = va["loss"], 0
            run.best = copy.deepcopy({k: v.cpu() for k, v in run.model.state_dict().items()})
        else:
            run.bad_epochs += 1
        log(f"epoch {run.epoch}/{config.epochs}  train_loss {row['train_loss']:.4f}  "
            f"val_loss {va['loss']:.4f}  val_acc {va['acc']:.3f}  {speed:.0f} img/s")

        # checkpoint, then stop early when validation loss has stalled
        if checkpoint is not None and rank == 0:
            run.save(Path(checkpoint))
        if stalled():
            log(f"early stop: no better val_loss for {config.patience} epochs")

    run.model.load_state_dict(run.best)
    return run.model.cpu().eval(), pd.DataFrame(run.history)


def _save(obj, path) -> None:
    """torch.save ``obj`` to ``path`` atomically, the same bytes for the same ``obj``.

    Through a buffer: torch.save names the archive's folder after the file it writes, and the
    atomic writer's temporary name is random.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(buffer.getvalue(), path)


def save_checkpoint(model: nn.Module, config: TrainConfig, in_channels: int, path) -> None:
    """Save the final model with the config that built it, so predict needs nothing else."""
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    # the pretrained file is only needed to initialise training, not to rebuild the model
    config_dict = {**asdict(config), "pretrained": None}
    _save({"model": state, "config": config_dict, "in_channels": in_channels}, path)


def load_checkpoint(path) -> tuple[nn.Module, TrainConfig]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    config = TrainConfig(**ckpt["config"])
    model = build_model(config.model, ckpt["in_channels"], config.width)
    model.load_state_dict(ckpt["model"])
    return model.eval(), config
