"""Just Train Twice (Liu et al., "Just Train Twice: Improving Group Robustness without Training
Group Information", ICML 2021): find the rows plain training gets wrong, then train again with
them upweighted. It needs no group label: the errors of a short run stand in for the groups
that a shortcut fails.

1. Identification: plain training for T epochs (``jtt_epochs``); its error set is
   E = {i : ŷ_id(x_i) ≠ y_i} on the training rows.
2. Final run: from scratch, each row weighted w_i = λ_up if i ∈ E else 1 (times its scheme
   weight), normalised to mean 1 as every scheme's weights are. Liu et al. upsample E λ_up
   times; with ``weights.mode: sampler`` the weights are drawn as such.

The identification model is the identification run's kept epoch (the lowest validation loss
within its T epochs, as :func:`biaslab.model.train.fit` keeps), which is epoch T while the
validation loss still falls.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from biaslab.model.batches import TrainData
from biaslab.model.devices import pick_device
from biaslab.model.predict import predict_logits
from biaslab.model.train import EVAL_BATCH, Fitted, fit


def upweight(errors: np.ndarray, weights: np.ndarray | None, factor: float) -> np.ndarray:
    """w_i = ``factor`` on the error set, 1 elsewhere, times ``weights``; mean 1."""
    errors = np.asarray(errors, dtype=bool)
    base = np.ones(len(errors)) if weights is None else np.asarray(weights, dtype=float)
    w = base * np.where(errors, factor, 1.0)
    return w / w.mean()


def identify(model, pixels: np.ndarray, train: TrainData, bias, device) -> np.ndarray:
    """The error set of ``model``: True where its decision (logit > 0) is not the label."""
    logits = predict_logits(model, pixels, train, bias, EVAL_BATCH, device)
    return (logits > 0) != train.labels.astype(bool)


def fit_jtt(pixels: np.ndarray, train: TrainData, val: TrainData, config, bias, *,
            epochs: int, factor: float, checkpoint: str | Path | None = None,
            log=None, **fit_kwargs) -> tuple[Fitted, np.ndarray]:
    """JTT: the identification run of ``epochs`` epochs, then the final run with its errors
    upweighted by ``factor`` (λ_up). ``fit_kwargs``: the rest of
    :func:`~biaslab.model.train.fit`'s.

    Returns the final run's :class:`~biaslab.model.train.Fitted` and the error set (a bool per
    training row). Each run has its own resume checkpoint (the identification run's beside
    ``checkpoint``, ``NAME-identify.pt``).
    """
    log = log or (lambda _: None)
    first_checkpoint = None
    if checkpoint is not None:
        path = Path(checkpoint)
        first_checkpoint = path.with_name(f"{path.stem}-identify{path.suffix}")
    first = fit(pixels, train, val, config.model_copy(update={"epochs": epochs}), bias,
                checkpoint=first_checkpoint, log=log, **fit_kwargs)
    ddp = fit_kwargs.get("ddp")
    device = fit_kwargs.get("device") or pick_device(
        config.device, ddp.local_rank if ddp is not None else 0)
    errors = identify(first.model.to(device), pixels, train, bias, device)
    log(f"jtt: the identification run ({epochs} epochs) misclassifies {int(errors.sum())} of "
        f"{len(errors)} training rows, upweighted x {factor:g}")
    upweighted = replace(train, weights=upweight(errors, train.weights, factor))
    final = fit(pixels, upweighted, val, config, bias, checkpoint=checkpoint, log=log,
                **fit_kwargs)
    if first_checkpoint is not None:
        first_checkpoint.unlink(missing_ok=True)
    return final, errors
