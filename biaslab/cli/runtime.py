"""The process's runtime, for the edges (``stages/train.py`` and the CLI): torchrun's
environment and progress on the terminal. With the commands of :mod:`biaslab.cli`, the only part
of ``biaslab`` that reads the environment or prints; the library takes devices, ranks and
callbacks as arguments.
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def distributed(device: str):
    """This process's training device and :class:`biaslab.model.train.Distributed` place.

    From torchrun's RANK, WORLD_SIZE and LOCAL_RANK (unset: one process alone); with several
    processes the process group is initialised here (NCCL on CUDA, gloo on the CPU).
    """
    import torch
    import torch.distributed as dist

    from biaslab.model.devices import pick_device
    from biaslab.model.train import Distributed

    env = os.environ
    ddp = Distributed(rank=int(env.get("RANK", 0)), world_size=int(env.get("WORLD_SIZE", 1)),
                      local_rank=int(env.get("LOCAL_RANK", 0)))
    device = pick_device(device, ddp.local_rank)
    if ddp.world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's own buffers on this process's GPU
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, ddp


class Progress:
    """Training progress on stderr: a tqdm bar per epoch (on a terminal only) and a line per
    epoch; ``quiet`` silences it all (DDP processes other than the first).

    Its methods are the ``log``, ``on_epoch`` and ``on_batch`` callbacks of
    :func:`biaslab.model.train.fit`; ``per_epoch`` is the number of images of an epoch's bar.
    """

    def __init__(self, epochs: int, per_epoch: int, quiet: bool = False):
        self.epochs, self.per_epoch, self.quiet = epochs, per_epoch, quiet
        self.bar = None

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def batch(self, epoch: int, n_images: int) -> None:
        if self.bar is None:  # None: shown on a terminal only
            self.bar = tqdm(total=self.per_epoch, unit="img", file=sys.stderr, leave=False,
                            disable=True if self.quiet else None,
                            desc=f"epoch {epoch}/{self.epochs}")
        self.bar.update(n_images)

    def epoch(self, row: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.log(f"epoch {row['epoch']}/{self.epochs}  train_loss {row['train_loss']:.4f}  "
                 f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.3f}  "
                 f"{row['img_per_s']:.0f} img/s")
