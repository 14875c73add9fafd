"""Checkpoints: a run's resume state after every epoch, and the final model for predict.

Both are written atomically and byte-stably (the same objects give the same bytes), so an
unchanged retrain leaves DVC nothing to rerun downstream. A resume state records what the run
was made from (train params and a fingerprint of its inputs and code) and is used only by a run
made from the same.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from biaslab.artifacts import write_bytes
from biaslab.config import TrainConfig, as_dict
from biaslab.data.bias import BiasSpec
from biaslab.model.architectures import build_model, load_torch_dict


def digest(files: Iterable[str | Path], params: dict) -> str:
    """The fingerprint of a run: sha256 of the contents of ``files`` (in the order given) and of
    ``params`` (as JSON).

    Each file is streamed in chunks by :func:`hashlib.file_digest`: ``pixels.npy`` can be GBs.
    Names and paths do not count, so a moved checkout keeps its fingerprint.
    """
    sha = hashlib.sha256()
    for path in files:
        with open(path, "rb") as fh:
            sha.update(hashlib.file_digest(fh, "sha256").digest())
    sha.update(json.dumps(params, sort_keys=True, default=str).encode())
    return sha.hexdigest()


@dataclass
class RunState:
    """Everything a killed run must restore to end exactly as an uninterrupted one would."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    rng: np.random.Generator  # epoch shuffles and the sampler's draws
    gen: torch.Generator  # augmentation
    average: nn.Module | None = None  # the weights' moving average (train.ema), if any
    epoch: int = 0  # epochs done
    bad_epochs: int = 0  # epochs since the best validation loss
    best: dict | None = None  # the best epoch's state dict, on the CPU
    best_loss: float = np.inf
    history: list[dict] = field(default_factory=list)  # one curves row per epoch

    def save(self, path: str | Path, config: TrainConfig, fingerprint: str | None) -> None:
        """Save the run, with the train params and the fingerprint it was made from."""
        _save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
               "scheduler": self.scheduler.state_dict() if self.scheduler else None,
               "rng": self.rng.bit_generator.state, "gen": self.gen.get_state(),
               "torch_rng": torch.get_rng_state(), "epoch": self.epoch, "best": self.best,
               "average": self.average.state_dict() if self.average is not None else None,
               "best_loss": self.best_loss, "bad_epochs": self.bad_epochs,
               "history": self.history, "config": as_dict(config),
               "fingerprint": fingerprint}, path)

    def resume(self, path: str | Path, config: TrainConfig, fingerprint: str | None,
               ) -> str | None:
        """Restore the run saved at ``path`` if it was made from the same params, inputs and
        code; returns what was done, for the log (None: no file)."""
        path = Path(path)
        if not path.is_file():
            return None
        # our own file, holding numpy RNG state and history: not a weights-only checkpoint
        state = torch.load(path, map_location="cpu", weights_only=False)
        if (state["config"], state.get("fingerprint")) != (as_dict(config), fingerprint):
            return f"checkpoint {path} was made from other inputs/params/code: starting afresh"
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        for key in ("epoch", "best", "best_loss", "bad_epochs", "history"):
            setattr(self, key, state[key])
        return f"resuming from {path} after epoch {self.epoch}"


def save_checkpoint(model: nn.Module, config: TrainConfig, in_channels: int, path,
                    bias: BiasSpec | None = None, findings: Sequence[str] = ()) -> None:
    """Save the final model with the config that built it and ``bias``, how S was shown to it
    (its :meth:`~biaslab.data.bias.BiasSpec.as_dict`; None: not recorded), so predict needs nothing
    else.

    ``findings``: the findings of its outputs, in order (several findings; recorded as
    ``findings``, absent for a single-label model, whose file stays as it was byte for byte:
    so does the config's ``pos_weight`` while it is ``none``).

    Raises
    ------
    ValueError : ``in_channels`` is not the channel count ``bias`` gives.
    """
    if bias is not None and in_channels != bias.channels:
        raise ValueError(f"in_channels = {in_channels}, but bias.kind = {bias.kind} gives "
                         f"{bias.channels} input channel(s)")
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    # the pretrained file is only needed to initialise training, not to rebuild the model
    config_dict = {**as_dict(config), "pretrained": None}
    for key, default in UNRECORDED_DEFAULTS.items():
        if config_dict.get(key) == default:
            del config_dict[key]
    extra = {"findings": list(findings)} if findings else {}
    _save({"model": state, "config": config_dict, "in_channels": in_channels,
           "bias": None if bias is None else bias.as_dict(), **extra}, path)


# how to get a model.pt back, said by every error about one
RERUN = ("expected a model.pt written by the train stage: rerun it "
         "(dvc repro train@SCHEME-SEED, "
         "or biaslab train) or fetch it (dvc pull)")
CHECKPOINT_KEYS = ("model", "config", "in_channels")  # what save_checkpoint writes
# train keys a checkpoint leaves out at their default (the model's config takes it back):
# keys added since, so that a model trained as before is the same file as before
UNRECORDED_DEFAULTS = {"pos_weight": "none"}


def load_checkpoint(path) -> tuple[nn.Module, TrainConfig]:
    """The model saved by :func:`save_checkpoint`, in eval mode, and its train config.

    The model's ``in_channels`` says whether it takes the bias channel (2) or not (1). A file
    that is missing, not a torch file (a Git LFS pointer, a truncated copy), or another
    program's (a bare state dict) is one error naming it.
    """
    ckpt = _read(path)
    # an older train's config, or weights that do not fit it: as unreadable as a corrupt file
    try:
        config = TrainConfig(**ckpt["config"])
        model = build_model(config.model, ckpt["in_channels"], config.width,
                            outputs=len(load_findings(path, ckpt)) or 1)
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        said = " ".join(str(exc).split())  # load_state_dict lists the keys over many lines
        said = said if len(said) <= 200 else said[:200] + "..."
        raise ValueError(f"{path}: not a model this version can rebuild "
                         f"({type(exc).__name__}: {said}); {RERUN}") from None
    return model.eval(), config


def load_findings(path, ckpt: dict | None = None) -> list[str]:
    """The findings of the outputs of the model saved at ``path`` (``ckpt``: its dict, when
    read already), in order; [] for a single-label model."""
    findings = (_read(path) if ckpt is None else ckpt).get("findings") or []
    if not (isinstance(findings, list) and all(isinstance(f, str) for f in findings)):
        raise ValueError(f"{path}: findings {findings!r} is not a list of names; {RERUN}")
    return findings


def load_bias(path) -> BiasSpec:
    """How the model saved at ``path`` by :func:`save_checkpoint` was shown S in training.

    A file that records none (saved without ``bias``, or before biases were recorded) is taken
    as trained without S when its model takes one channel; with two (the noise channel) its
    noise seed is unknown: an error, as is a file that is not a model saved by train.
    """
    ckpt = _read(path)
    recorded = ckpt.get("bias")
    if recorded is None and ckpt["in_channels"] == 1:
        return BiasSpec(kind="none")
    if recorded is None:
        raise ValueError(f"{path}: a model trained with the noise channel that does not record "
                         f"its bias (bias.seed unknown); {RERUN}")
    try:
        return BiasSpec(**recorded)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: bias {recorded} is not one this version knows ({exc}); "
                         f"{RERUN}") from None


def _read(path) -> dict:
    """The dict saved at ``path`` by :func:`save_checkpoint`, with its keys checked."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: missing; {RERUN}")
    ckpt = load_torch_dict(path, holds="a model saved by train", expected=RERUN)
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise ValueError(f"{path}: no key(s) {missing} (a bare state dict, or another "
                         f"program's file?); {RERUN}")
    return ckpt


def _save(obj, path) -> None:
    """torch.save ``obj`` to ``path`` atomically, the same bytes for the same ``obj``.

    Through a buffer: torch.save names the archive's folder after the file it writes, and the
    atomic writer's temporary name is random.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(buffer.getvalue(), path)
