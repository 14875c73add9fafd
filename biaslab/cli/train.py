"""Train a classifier on a table of image paths, outside DVC, with the course's options.

The table (under --datadir) has an image path column and a 0/1 label column. It is split
(stratified on the label, patients kept together), the model trained, and model.pt, curves.csv
and split.csv written into --logdir. S is not drawn here: when the table has an 's' column (0/1),
the model is shown it as --bias-kind says (the noise channel by default, or a patch), and
model.pt records how, for `biaslab predict`. The defaults are those of params.yaml's train and
bias sections. Under torchrun (`torchrun --nproc_per_node N -m biaslab train ...`) it trains
with DDP, as the train stage does.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from biaslab.cli.image_table import add_table_arguments, images
from biaslab.cli.runtime import Progress, distributed
from biaslab.config import BiasConfig, TrainConfig
from biaslab.data.bias import BiasSpec

# the bias section's keys that say how S is shown (S itself is the table's s column, not drawn)
BIAS_OPTIONS = ("kind", "seed", "patch_size", "patch_position", "patch_value")
EXAMPLES = """\
  biaslab train --datadir data/cxr --csv metadata.csv --label-col label_covid --logdir runs/a
  biaslab train --datadir data/cxr --csv metadata.csv --weights-col w --model resnet18 \\
      --epochs 20 --lr 3e-4 --logdir runs/b                      # weighted, another model
  biaslab train --datadir data/cxr --csv with_s.csv --bias-kind patch --bias-patch-size 6 \\
      --logdir runs/c                         # S (the table's s column) shown as a patch
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train = TrainConfig()  # the pipeline's defaults are the command's
    add_table_arguments(parser)
    parser.add_argument("--logdir", required=True, help="where model.pt and curves.csv go")
    parser.add_argument("--model", default=train.model, help="small_cnn, alexnet, resnet18/34/50")
    for flag, key in (("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--lr", "lr")):
        default = getattr(train, key)
        parser.add_argument(flag, type=type(default), default=default, help=f"default: {default}")
    parser.add_argument("--seed", type=int, default=train.seeds[0],
                        help=f"training seed (default: the first of train.seeds, "
                             f"{train.seeds[0]})")
    parser.add_argument("--device", default=train.device, help="auto, cpu or cuda")
    for key in BIAS_OPTIONS:  # how S is shown when the table has an s column
        info = BiasConfig.model_fields[key]
        parser.add_argument("--bias-" + key.replace("_", "-"), type=type(info.default),
                            default=info.default,
                            help=f"bias.{key}: {info.description} (default: {info.default})")


def run(args) -> int:
    from biaslab.data.split import stratified_split
    from biaslab.model.batches import TrainData
    from biaslab.model.checkpoint import save_checkpoint
    from biaslab.model.recipe import swing, unstable
    from biaslab.model.train import fit

    try:
        config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, device=args.device, seeds=[args.seed])
        bias = BiasSpec.from_config(BiasConfig(
            **{key: getattr(args, f"bias_{key}") for key in BIAS_OPTIONS}))
        if bias.kind == "patch":
            bias.patch_box(args.size, args.size)  # fits the images: said before decoding them
    except ValueError as exc:  # the values came from the command line, not params.yaml
        raise type(exc)(_as_options(str(exc))) from None
    device, ddp = distributed(config.device)
    index, pixels = images(args)
    if "s" not in index:  # S unknown: nothing to show
        bias = BiasSpec(kind="none")
    split = stratified_split(index, {"train": 0.8, "val": 0.2, "test": 0.0}, ["label"],
                             args.seed)
    table = index.merge(split, on="row")
    if args.weights_col:  # each split's weights scaled to mean 1
        w = pd.to_numeric(table[args.weights_col], errors="raise")
        table["weight"] = w / w.groupby(table["split"]).transform("mean")
    weights = "weight" if args.weights_col else None
    train_data = TrainData.from_table(table, "train", weights=weights)
    progress = Progress(config.epochs, -(-len(train_data.rows) // ddp.world_size),
                        quiet=ddp.rank != 0)
    fitted = fit(pixels, train_data, TrainData.from_table(table, "val", weights=weights), config,
                 bias=bias, seed=args.seed, device=device, ddp=ddp,
                 log=progress.log,
                 on_epoch=progress.epoch, on_batch=progress.batch)
    if ddp.rank != 0:  # under torchrun only the first process writes
        return 0
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(fitted.model, config, train_data.in_channels(bias), logdir / "model.pt",
                    bias=bias)
    fitted.curves.to_csv(logdir / "curves.csv", index=False)
    table[["row", "source", "label", "split"]].to_csv(logdir / "split.csv", index=False)
    for flag in (fitted.degenerate, unstable(swing(fitted.curves))):
        if flag:
            print(f"train: warning: {flag}", file=sys.stderr)
    print(f"train: {len(table)} images, best val_loss {fitted.curves['val_loss'].min():.4f} -> "
          f"{logdir / 'model.pt'}")
    return 0


def _as_options(message: str) -> str:
    """An error about params.yaml keys, told with the command line's options instead."""
    message = message.replace("params.yaml: ", "").replace("prepare.size", "--size")
    return re.sub(r"\b(train|bias)\.(\w+)", lambda m: ("--" if m[1] == "train" else "--bias-")
                  + m[2].replace("_", "-"), message)
