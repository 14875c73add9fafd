"""The training loop in the shape of torchvision's reference script: :func:`train_one_epoch`,
:func:`evaluate`, and :func:`fit` composing them.

Resumable: a checkpoint after every epoch lets a killed run go on and end exactly as an
uninterrupted one would on the same device. On the CPU, CUDA or under DDP: the caller (a stage,
the CLI) picks the device, calls ``torch.distributed.init_process_group`` and passes the
process's place in the job as :class:`Distributed`; with ``world_size > 1`` the model is wrapped
in DistributedDataParallel and each process trains on its shard of every epoch's shuffle. The
library neither prints nor reads the environment: progress goes to the caller's callbacks.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

from biaslab.config import TrainConfig
from biaslab.data.bias import DEFAULT_BIAS, BiasSpec
from biaslab.fairness.weights import sample_order
from biaslab.model.architectures import build_model
from biaslab.model.batches import TrainData, batches, cached_inputs
from biaslab.model.checkpoint import RunState
from biaslab.model.devices import pick_device
from biaslab.model.multilabel import (
    degenerate_findings,
    multilabel_figures,
    per_finding_loss,
    positive_weights,
)
from biaslab.model.predict import predict_logits
from biaslab.model.recipe import averaged_model, cosine_schedule, recompute_batchnorm

EVAL_BATCH = 256  # batch size of the evaluation passes (no gradients: larger is fine)
MIN_SPREAD = 1e-3  # validation scores with a smaller standard deviation count as constant


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (RANK, WORLD_SIZE, LOCAL_RANK); default: alone."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the GPU of this process on its machine


class Fitted(NamedTuple):
    """What :func:`fit` returns."""

    model: nn.Module  # the epoch with the lowest validation loss, on the CPU, in eval mode
    curves: pd.DataFrame  # one row per epoch
    degenerate: str | None  # why the model looks like it learnt nothing; None when it learnt


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


def setup(config: TrainConfig, in_channels: int, device: torch.device, seed: int = 0,
          steps_per_epoch: int = 1, outputs: int = 1, method=None) -> RunState:
    """A fresh run: the model (``outputs`` logits, one per finding) seeded by ``seed`` on
    ``device``, its optimizer, scheduler (the cosine one counts ``steps_per_epoch`` batches an
    epoch), weight average and RNGs; with an in-training ``method``, the module it trains
    (``method.wrap``)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    model = build_model(config.model, in_channels, config.width, config.pretrained, outputs)
    model = (model if method is None else method.wrap(model)).to(device)
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
    elif config.scheduler == "cosine":
        scheduler = cosine_schedule(optimizer, config.epochs, steps_per_epoch,
                                    config.warmup_epochs)
    average = averaged_model(model, config.ema) if config.ema > 0 else None
    return RunState(model, optimizer, scheduler, rng=np.random.default_rng(seed),
                    gen=torch.Generator().manual_seed(seed), average=average)


def epoch_order(data: TrainData, rng: np.random.Generator, ddp: Distributed) -> np.ndarray:
    """This process's positions in ``data`` for one epoch, in training order.

    A shuffle (or with ``data.sampler`` a weighted draw), the same on every process, padded to a
    multiple of the world size and dealt out by rank.
    """
    if data.sampler:  # the weights decide which rows are drawn, not what each row counts
        weights = np.ones(len(data.rows)) if data.weights is None else data.weights
        order = sample_order(weights / weights.sum(), len(data.rows), rng)
    else:
        order = rng.permutation(len(data.rows))
    world = ddp.world_size
    return np.resize(order, -(-len(order) // world) * world)[ddp.rank::world]


def train_one_epoch(net: nn.Module, loss_fn, optimizer: torch.optim.Optimizer,
                    loader: Iterator[tuple[torch.Tensor, ...]], config: TrainConfig,
                    gen: torch.Generator, device: torch.device,
                    on_batch: Callable[[int], None],
                    after_step: Callable[[], None] | None = None,
                    method=None) -> tuple[float, int]:
    """One pass of ``net`` over the (x, y, w, g) batches of ``loader``; ``on_batch(n_images)``;
    ``after_step()`` after each optimizer step (a per-batch schedule, the weight average).

    The loss: the weighted per-sample loss, or an in-training ``method``'s objective
    (``method.loss``, given each row's group g). Returns the sum over images of the loss, and
    the number of images.
    """
    net.train()
    use_amp = config.amp and device.type == "cuda"
    total, n_seen = 0.0, 0
    for x, y, w, g in loader:
        if config.augment:
            x = augment(x, gen)
        if device.type == "cuda" and config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # forward / backward: bf16 autocast on CUDA, full precision on the CPU
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            if method is None:
                loss = (loss_fn(net(x).float(), y) * w).mean()
            else:  # biaslab.model.mitigation
                loss = method.loss(net, x, y, w, g, loss_fn)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        total += loss.item() * len(y)  # a CPU-GPU sync point, once per batch
        n_seen += len(y)
        on_batch(len(y))
    return total, n_seen


def evaluate(model: nn.Module, pixels: np.ndarray, data: TrainData, bias: BiasSpec,
             device: torch.device, amp: bool = False, cache: torch.Tensor | None = None,
             ) -> tuple[dict[str, float], np.ndarray]:
    """Unweighted loss, accuracy, balanced accuracy and per-group accuracy (``acc_gG``) at
    threshold 0.5 of ``model`` on ``data``, and its logits; with several findings, each figure
    is the mean over findings (:func:`~biaslab.model.multilabel.multilabel_figures`)."""
    labels = data.labels
    # (N,) with one output: data.findings: [Edema] has one finding, and (N, 1) labels
    logits = predict_logits(model, pixels, data, bias, EVAL_BATCH, device, amp,
                            cache).reshape(labels.shape)
    correct = (logits > 0) == labels
    if data.findings:
        out = multilabel_figures(logits, labels)
    else:
        t_logits = torch.from_numpy(logits)
        t_labels = torch.from_numpy(labels.astype(np.float32))
        loss = nn.functional.binary_cross_entropy_with_logits(t_logits, t_labels).item()
        recalls = [correct[labels == c].mean() for c in (0, 1) if np.any(labels == c)]
        out = {"loss": loss, "acc": float(correct.mean()), "bacc": float(np.mean(recalls))}
    groups = data.groups if data.groups is not None else data.s
    if groups is not None:
        for g in np.unique(groups):
            out[f"acc_g{g}"] = float(correct[groups == g].mean())
    return out, logits


def degenerate(val_logits: np.ndarray, val_labels: np.ndarray,
               val_accs: Sequence[float]) -> str | None:
    """Why a model looks like it learnt nothing, or None.

    The signs, on the validation split: scores that are not finite (training diverged), scores
    with almost no spread (std of P(y=1) below MIN_SPREAD), every image on the same side of 0.5
    while both classes are present, or the same accuracy ``val_accs`` in every epoch and no
    better than always predicting the majority class.
    """
    labels = np.asarray(val_labels)
    if len(labels) == 0:
        return None
    if not np.isfinite(val_logits).all():
        return "validation scores are not finite: training diverged"
    scores = torch.sigmoid(torch.from_numpy(val_logits).double()).numpy()
    if scores.std() < MIN_SPREAD:
        return (f"validation scores are nearly constant (std {scores.std():.2g} < "
                f"{MIN_SPREAD:g})")
    positive = val_logits > 0
    if len(np.unique(labels)) == 2 and (positive.all() or not positive.any()):
        return f"the model predicts class {int(positive[0])} for every validation image"
    majority = max(labels.mean(), 1 - labels.mean())
    if len(val_accs) > 1 and len(set(val_accs)) == 1 and val_accs[0] <= majority:
        return (f"val_acc {val_accs[0]:.3f} in all {len(val_accs)} epochs, no better than "
                "always predicting the majority class")
    return None


def fit(
    pixels: np.ndarray,
    train: TrainData,
    val: TrainData,
    config: TrainConfig,
    bias: BiasSpec = DEFAULT_BIAS,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    ddp: Distributed = Distributed(),
    checkpoint: str | Path | None = None,
    fingerprint: str | None = None,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    method=None,
) -> Fitted:
    """Train ``config.model`` on ``train``; keep the epoch with the lowest validation loss.

    Parameters
    ----------
    bias : how S (``train.s``, ``val.s``) is shown to the model; default: the bias section's.
    seed : the training seed (one of ``train.seeds``): initial weights, shuffles, augmentation.
    device : the training device; None: ``pick_device(config.device, ddp.local_rank)``.
    ddp : this process's place in a DDP job; with ``world_size > 1`` the caller has already
        called ``torch.distributed.init_process_group``.
    checkpoint : path, optional
        Where to save the run after every epoch (first process only). If the file exists and
        was made with the same train params and ``fingerprint``, the run resumes from it;
        otherwise it is ignored (said through ``log``) and overwritten.
    fingerprint : what the run is made from besides ``config`` (inputs, code), as a string.
    log, on_epoch, on_batch : callbacks, called on every process: ``log(message)`` (resuming,
        early stop), ``on_epoch(row)`` with each epoch's curves row, ``on_batch(epoch,
        n_images)`` after each training batch of the epoch under way (1-based).
    method : an in-training method's hooks (:mod:`biaslab.model.mitigation`): the module it
        trains, its loss given ``train.groups``, the plain model it exports; None: plain
        training.

    Returns
    -------
    Fitted : ``model``, the best model on the CPU in eval mode; ``curves``, one row per epoch:
        ``epoch``, ``lr``, ``train_loss`` (weighted), ``train_acc``, ``val_loss``, ``val_acc``,
        ``val_bacc``, ``val_acc_gG`` per group G, ``img_per_s``; ``degenerate``, see
        :func:`degenerate` (on the best model's validation logits).

    Raises
    ------
    ValueError : ``train`` or ``val`` has no rows.
    """
    log, on_epoch, on_batch = (f or _ignore for f in (log, on_epoch, on_batch))
    # the loop learns on train and keeps the epoch best on val: without either it has nothing
    for name, data in (("train", train), ("val", val)):
        if len(data.rows) == 0:
            raise ValueError(f"the {name} split has no rows: training needs images in both "
                             "train and val (split.fractions, or the split file given)")
    device = pick_device(config.device, ddp.local_rank) if device is None else torch.device(device)
    if ddp.world_size > 1 and not dist.is_initialized():
        raise ValueError(f"ddp.world_size = {ddp.world_size} but torch.distributed is not "
                         "initialised; call torch.distributed.init_process_group first")
    # batches per epoch on this process (its shard of each epoch): the cosine schedule's unit
    shard = -(-len(train.rows) // ddp.world_size)  # ceil: epoch_order pads the shuffle
    steps = -(-shard // config.batch_size)
    run = setup(config, train.in_channels(bias), device, seed, steps,
                outputs=len(train.findings) or 1, method=method)
    if checkpoint is not None and (message := run.resume(checkpoint, config, fingerprint)):
        log(message)
    net = _wrap(run.model, config, device, ddp)
    loss_fn, amp = per_sample_loss(config), config.amp and device.type == "cuda"
    loss_fn = _findings_loss(loss_fn, config, train)
    weights = _loss_weights(train)
    # inputs built once per run, for training and for every epoch's evaluation passes
    cache = cached_inputs(pixels, train, bias)
    val_cache = cached_inputs(pixels, val, bias)

    def stalled() -> bool:
        return bool(config.patience) and run.bad_epochs >= config.patience

    per_batch = config.scheduler == "cosine"  # stepped after every batch, the others per epoch

    def after_step() -> None:
        if per_batch:
            run.scheduler.step()
        if run.average is not None:
            run.average.update_parameters(run.model)

    while run.epoch < config.epochs and not stalled():
        # train on this process's shard of the epoch's shuffle, then sync processes
        order = epoch_order(train, run.rng, ddp)
        lr = run.optimizer.param_groups[0]["lr"]  # the epoch's first batch's
        t0 = time.perf_counter()
        loader = _loader(pixels, train, order, weights, bias, config.batch_size, device,
                         cache)
        total, n_seen = train_one_epoch(net, loss_fn, run.optimizer, loader, config, run.gen,
                                        device, lambda n: on_batch(run.epoch + 1, n),
                                        after_step, method)
        speed = n_seen * ddp.world_size / (time.perf_counter() - t0)
        if run.scheduler and not per_batch:
            run.scheduler.step()
        total, n_seen = _sync(run.model, total, n_seen, device, ddp)

        # evaluate on train and val; keep the best model on validation loss
        run.epoch += 1
        model = evaluated_model(run, pixels, train, bias, config, device, cache)
        tr, _ = evaluate(model, pixels, train, bias, device, amp, cache)
        va, _ = evaluate(model, pixels, val, bias, device, amp, val_cache)
        row = {"epoch": run.epoch, "lr": lr, "train_loss": total / n_seen, "train_acc": tr["acc"],
               "val_loss": va["loss"], "val_acc": va["acc"], "val_bacc": va["bacc"],
               **{f"val_{k}": v for k, v in va.items() if k.startswith("acc_g")},
               "img_per_s": speed}
        run.history.append(row)
        if va["loss"] < run.best_loss:
            run.best_loss, run.bad_epochs = va["loss"], 0
            run.best = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
        else:
            run.bad_epochs += 1

        # checkpoint (so a run killed after an epoch's report resumes after that epoch), report,
        # then stop early when validation loss has stalled
        if checkpoint is not None and ddp.rank == 0:
            run.save(checkpoint, config, fingerprint)
        on_epoch(row)
        if stalled():
            log(f"early stop: no better val_loss for {config.patience} epochs")

    # the best model, and whether it learnt anything
    run.model.load_state_dict(run.best)
    val_logits = predict_logits(run.model, pixels, val, bias, EVAL_BATCH, device, amp,
                                val_cache).reshape(val.labels.shape)
    curves = pd.DataFrame(run.history)
    flag = (degenerate_findings(val_logits, val.labels, val.findings, degenerate)
            if val.findings else degenerate(val_logits, val.labels, curves["val_acc"].tolist()))
    model = run.model if method is None else method.export(run.model)
    return Fitted(model.cpu().eval(), curves, flag)


def evaluated_model(run: RunState, pixels: np.ndarray, train: TrainData, bias: BiasSpec,
                    config: TrainConfig, device: torch.device,
                    cache: torch.Tensor | None) -> nn.Module:
    """The model an epoch is judged by and kept as: the weight average (``train.ema`` > 0) or
    the weights themselves, with its BatchNorm statistics recomputed over the whole training
    split in row order (``train.bn_recompute``; see :mod:`biaslab.model.recipe` for why)."""
    model = run.model if run.average is None else run.average.module
    if config.bn_recompute:
        order = np.arange(len(train.rows))
        inputs = (x for _, x in batches(pixels, train, bias, config.batch_size, order, device,
                                        cache))
        recompute_batchnorm(model, inputs, amp=config.amp and device.type == "cuda")
    return model


def _ignore(*_) -> None:
    """The default callback: the library never prints."""


def _findings_loss(loss_fn, config: TrainConfig, train: TrainData):
    """With several findings, the per-image loss over K outputs (positives weighted by
    ``train.pos_weight``); ``loss_fn`` as it is with one label."""
    if train.findings:
        weights = positive_weights(config.pos_weight, train.findings, train.labels)
        return per_finding_loss(loss_fn, weights)
    if config.pos_weight != "none":
        raise ValueError(f"train.pos_weight = {config.pos_weight!r} weighs the findings of "
                         "data.findings, and this run has one label; use none (one label: "
                         "weights.schemes or train.focal_alpha)")
    return loss_fn


def _wrap(model: nn.Module, config: TrainConfig, device: torch.device,
          ddp: Distributed) -> nn.Module:
    """The module the loop calls: DDP across processes (gradients averaged), compiled on request."""
    net = model
    if ddp.world_size > 1:
        ids = None if device.type == "cpu" else [device.index]
        net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    return torch.compile(net) if config.compile else net


def _loss_weights(data: TrainData) -> np.ndarray:
    """Each row's weight in the loss: its sample weight, or 1 (none given, or drawn by them)."""
    if data.weights is None or data.sampler:
        return np.ones(len(data.rows))
    return data.weights


def _loader(pixels, data: TrainData, order: np.ndarray, weights: np.ndarray, bias: BiasSpec,
            size: int, device: torch.device, cache: torch.Tensor | None):
    """The (x, y, w, g) batches of ``order``: inputs, 0/1 labels as floats, loss weights, and
    group codes (None without ``data.groups``)."""
    for idx, x in batches(pixels, data, bias, size, order, device, cache):
        y = torch.from_numpy(data.labels[idx].astype(np.float32)).to(device)
        w = torch.from_numpy(weights[idx].astype(np.float32)).to(device)
        g = None if data.groups is None else torch.from_numpy(
            data.groups[idx].astype(np.int64)).to(device)
        yield x, y, w, g


def _sync(model: nn.Module, total: float, n_seen: int, device: torch.device,
          ddp: Distributed) -> tuple[float, int]:
    """Under DDP: the weighted loss and image count over all processes, and rank 0's BatchNorm
    statistics on every process (DDP syncs gradients, not the buffers of the last forward)."""
    if ddp.world_size == 1:
        return total, n_seen
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
    # on the training device: NCCL reduces CUDA tensors only (gloo takes CPU ones)
    sums = torch.tensor([total, float(n_seen)], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    return sums[0].item(), int(sums[1].item())
