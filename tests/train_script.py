"""A tiny training run for the resume and DDP tests: digits 1 vs 7 at 12x12, S from p=(0.1, 0.9).

Usage: python tests/train_script.py OUT_DIR [--checkpoint PATH] [--fingerprint KEY]. Writes
OUT_DIR/model-RANK.pt (the final state dict) and OUT_DIR/curves-RANK.csv; one line per epoch on
stderr. Under torchrun it sets DDP up from the environment, as the train stage does.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from biaslab.cli.runtime import Progress, distributed  # noqa: E402
from biaslab.config import TrainConfig  # noqa: E402
from biaslab.data.bias import draw_s  # noqa: E402
from biaslab.data.images import prepare_arrays  # noqa: E402
from biaslab.data.sources import load_digits_source  # noqa: E402
from biaslab.model.batches import TrainData  # noqa: E402
from biaslab.model.train import fit  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--checkpoint")
parser.add_argument("--fingerprint")
parser.add_argument("--epochs", type=int, default=6)
args = parser.parse_args()
torch.set_num_threads(1)
index, images = load_digits_source([1], [7])
pixels = prepare_arrays(images, 12)
labels = index["label"].to_numpy()
s = draw_s(labels, 0.1, 0.9, seed=0)
rows = np.arange(len(labels))
train = TrainData(rows[:250], labels[:250], s[:250])
val = TrainData(rows[250:], labels[250:], s[250:])
config = TrainConfig(epochs=args.epochs, batch_size=32, width=4, augment=True, optimizer="sgd",
                     lr=0.05, scheduler="step", step_size=2, loss="focal", focal_alpha=0.6)
device, ddp = distributed(config.device)
progress = Progress(config.epochs, len(train.rows), quiet=ddp.rank != 0)
fitted = fit(pixels, train, val, config, device=device, ddp=ddp, checkpoint=args.checkpoint,
             fingerprint=args.fingerprint, log=progress.log, on_epoch=progress.epoch,
             on_batch=progress.batch)
torch.save(fitted.model.state_dict(), Path(args.out) / f"model-{ddp.rank}.pt")
fitted.curves.to_csv(Path(args.out) / f"curves-{ddp.rank}.csv", index=False)
