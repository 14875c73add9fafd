"""The parts of the training recipe that make the evaluated model stable from epoch to epoch.

On the default task (small_cnn, Adam at lr 0.002, 500 digits with the noise channel) the
eval-mode validation balanced accuracy swung by up to 0.3 between consecutive epochs (std 0.09
over the second half for seed 0) while the training loss fell smoothly. Measured, epoch by
epoch (docs/training.md, "A stable recipe"): the model in train mode, or with BatchNorm's
statistics recomputed over the training set, scored 0.90-0.96 where the eval-mode model (the
running statistics) scored 0.62-0.69. The running statistics are an exponential moving average
(momentum 0.1) of the last ~10 batches' statistics, each computed with weights that Adam was
still moving fast: they lag the weights, and the lag shifts the logit of every image. The first
layer's statistics, where the bias channel (0 for S=0, N(0, 1) for S=1) enters, matched within
0.1 SD; the deeper layers' means were off by 0.1-0.4 SD. And even with exact statistics the
weights themselves moved too much at a constant learning rate for the last epochs to agree.

So the recipe has three parts, each a ``train`` param:

- :func:`cosine_schedule`: a linear warm-up, then a cosine decay of the learning rate to 0 by
  the last step (Loshchilov & Hutter 2017, SGDR; Goyal et al. 2017 for the warm-up), stepped
  after every batch, so the last epochs take small steps;
- :func:`averaged_model`: an exponential moving average of the weights (Polyak & Juditsky 1992;
  as in SWAD, Cha et al. 2021, one of MEDFAIR's methods), updated after every step; the
  average, not the last iterate, is evaluated each epoch and kept;
- :func:`recompute_batchnorm`: BatchNorm's statistics of the evaluated model recomputed over
  the whole training set after each epoch ("precise BN", Wu & Johnson 2021), so that eval
  mode uses the statistics of the weights it runs with.

:func:`swing` measures the result, :func:`unstable` flags a run above :data:`MAX_SWING`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

MAX_SWING = 0.02  # std of the second half's val_bacc above which a run is flagged unstable
SWING_FIGURE = "val_bacc"  # the curves column whose swing is measured


def cosine_factor(step: int, total: int, warmup: int) -> float:
    """The learning rate's factor at ``step`` (0-based) of ``total``: linear warm-up over the
    first ``warmup`` steps, then cosine decay to 0 at step ``total``.

    .. math:: f(t) = \\frac{t + 1}{W} \\; (t < W), \\qquad
              f(t) = \\tfrac12 \\left(1 + \\cos \\pi \\frac{t - W}{T - W}\\right) \\; (t \\ge W)
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def cosine_schedule(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler of :func:`cosine_factor` over ``epochs x steps_per_epoch`` steps, to be
    stepped after every optimizer step; ``warmup_epochs`` may be fractional (rounded to steps).
    """
    total = epochs * steps_per_epoch
    warmup = min(total, round(warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, total, warmup))


def averaged_model(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights: after each step,
    :math:`\\bar\\theta \\leftarrow d\\,\\bar\\theta + (1 - d)\\,\\theta` with ``decay`` d
    (the first update copies θ); call ``update_parameters(model)`` after each step.

    Its BatchNorm statistics are copied from ``model`` at each update (they belong to the
    weights, not to the average): recompute them with :func:`recompute_batchnorm` before
    evaluating the average."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


def recompute_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor],
                        amp: bool = False) -> None:
    """Replace the running statistics of every BatchNorm layer of ``model`` by the exact mean
    and variance of its inputs over ``batches`` (each layer's cumulative average over batches),
    in place; the model's training flag and the layers' momenta are left as they were.

    Cumulative (``momentum=None``) rather than exponential: every batch counts the same, so the
    statistics are those of the current weights over the whole training set (PreciseBN, Wu &
    Johnson 2021, "Rethinking 'Batch' in BatchNorm").
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momenta, was_training = [m.momentum for m in layers], model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                model(x)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    model.train(was_training)


def swing(curves: pd.DataFrame, column: str = SWING_FIGURE) -> float | None:
    """The standard deviation (ddof 1) of ``column`` over the second half of the epochs
    (epochs ⌊n/2⌋+1 .. n of n; at least 2 of them), or None with fewer than 4 epochs.

    The stability figure of a run: the kept epoch is chosen among these, so a large swing
    makes the kept model a matter of which epoch happened to be good.
    """
    values = curves[column].to_numpy(dtype=float) if column in curves else np.array([])
    if len(values) < 4:
        return None
    return float(np.std(values[len(values) // 2:], ddof=1))


def unstable(figure: float | None, bound: float = MAX_SWING) -> str | None:
    """Why a run looks unstable (its :func:`swing` above ``bound``), or None."""
    if figure is None or not figure > bound:
        return None
    return (f"{SWING_FIGURE} swings from epoch to epoch: std {figure:.3f} over the second half "
            f"of the epochs > {bound:g}; the kept epoch is a matter of luck")
