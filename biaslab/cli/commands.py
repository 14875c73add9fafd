"""``python -m biaslab train|predict``: train or score outside DVC, with the course's options.

    python -m biaslab train --datadir DIR --csv metadata.csv [--weights-col w] --logdir runs/a
    python -m biaslab predict --datadir DIR --csv test.csv --ckpt runs/a/model.pt --csv-out p.csv

The table (under --datadir) has an image path column and a 0/1 label column. ``train`` splits
it (stratified on the label, patients kept together), trains and writes ``model.pt``,
``curves.csv`` and ``split.csv`` into --logdir. ``predict`` only loads a checkpoint (no
training) and writes one score per image. No bias is injected here: models trained by the
pipeline with the noise channel need an ``s`` column (0/1) in the table.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from biaslab.cli.runtime import Progress, distributed
from biaslab.config import BiasConfig, ConfigError, DataConfig, TrainConfig


def _images(args) -> tuple[pd.DataFrame, np.ndarray]:
    """The table's usable rows and their prepared pixels; rejected images are reported."""
    from biaslab.prepare import decode_source
    from biaslab.sources import load_source

    header = pd.read_csv(Path(args.datadir) / args.csv, nrows=0).columns
    keep = ([args.weights_col] if args.weights_col else []) + (["s"] if "s" in header else [])
    data = DataConfig(source="csv", root=str(args.datadir), table=args.csv,
                      path_column=args.path_col, label_column=args.label_col, attributes=keep)
    src = load_source(data, Path(args.datadir))
    pixels = np.zeros((len(src.paths), args.size, args.size), dtype=np.uint8)
    keep, rejected = decode_source(src, args.size, pixels, workers=args.workers)
    for row in rejected.itertuples():
        print(f"rejected: {row.path}: {row.reason}", file=sys.stderr)
    index = src.index[keep].reset_index(drop=True)
    index.insert(0, "row", np.arange(len(index)))
    return index, pixels[keep]


def train(args) -> None:
    from biaslab.batches import TrainData
    from biaslab.checkpoint import save_checkpoint
    from biaslab.split import stratified_split
    from biaslab.train import fit

    try:
        config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, device=args.device, seed=args.seed)
    except ConfigError as exc:  # the values came from the command line, not params.yaml
        raise ConfigError(re.sub(r"params\.yaml: train\.(\w+)",
                                 lambda m: "--" + m[1].replace("_", "-"), str(exc))) from None
    device, ddp = distributed(config.device)
    index, pixels = _images(args)
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
                 bias_seed=args.bias_seed, device=device, ddp=ddp, log=progress.log,
                 on_epoch=progress.epoch, on_batch=progress.batch)
    if ddp.rank != 0:  # under torchrun only the first process writes
        return
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(fitted.model, config, train_data.in_channels, logdir / "model.pt")
    fitted.curves.to_csv(logdir / "curves.csv", index=False)
    table[["row", "source", "label", "split"]].to_csv(logdir / "split.csv", index=False)
    if fitted.degenerate:
        print(f"train: warning: {fitted.degenerate}", file=sys.stderr)
    print(f"train: {len(table)} images, best val_loss {fitted.curves['val_loss'].min():.4f} -> "
          f"{logdir / 'model.pt'}")


def predict(args) -> None:
    from biaslab.checkpoint import load_checkpoint
    from biaslab.predict import predict_scores

    if not Path(args.ckpt).is_file():
        raise FileNotFoundError(f"--ckpt: {args.ckpt} not found; give the model.pt that "
                                "`python -m biaslab train` (or the pipeline) wrote")
    model, _ = load_checkpoint(args.ckpt)
    index, pixels = _images(args)
    needs_s = model.in_channels == 2
    if needs_s and "s" not in index:
        raise ValueError(f"{args.csv}: the model in {args.ckpt} was trained with the bias "
                         "channel; the table needs an 's' column (0/1)")
    table = index.assign(split="test")
    if not needs_s:
        table = table.drop(columns=["s"], errors="ignore")
    scores = predict_scores(model, pixels, table, bias_seed=args.bias_seed)
    out = index[["source", "label"]].assign(score=scores["score"].to_numpy())
    out.to_csv(args.csv_out, index=False)
    print(f"predict: {len(out)} images scored with {args.ckpt} -> {args.csv_out}")


def parser() -> argparse.ArgumentParser:
    data, train_cfg = DataConfig(), TrainConfig()  # the pipeline's defaults are the CLI's
    p = argparse.ArgumentParser(prog="python -m biaslab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("train", "predict"):
        s = sub.add_parser(name, help=f"{name} from a table of image paths")
        s.add_argument("--datadir", required=True, type=Path, help="folder of the images")
        s.add_argument("--csv", required=True, help="table under --datadir (path, label, ...)")
        s.add_argument("--path-col", default=data.path_column,
                       help=f"image path column (default: {data.path_column})")
        s.add_argument("--label-col", default=data.label_column,
                       help=f"0/1 label column (default: {data.label_column})")
        s.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
        s.add_argument("--workers", type=int, default=0, help="decoding processes (0: cores)")
        s.add_argument("--weights-col", help="sample-weight column (train only)")
        s.add_argument("--bias-seed", type=int, default=BiasConfig().seed,
                       help="seed of the noise channel where s = 1 (default: bias.seed's "
                            f"default, {BiasConfig().seed})")
    t = sub.choices["train"]
    t.add_argument("--logdir", required=True, help="where model.pt and curves.csv go")
    t.add_argument("--model", default=train_cfg.model, help="small_cnn, alexnet, resnet18/34/50")
    for flag, key in (("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--lr", "lr"),
                      ("--seed", "seed")):
        default = getattr(train_cfg, key)
        t.add_argument(flag, type=type(default), default=default, help=f"default: {default}")
    t.add_argument("--device", default=train_cfg.device, help="auto, cpu or cuda")
    q = sub.choices["predict"]
    q.add_argument("--ckpt", required=True, help="model.pt written by train (or the pipeline)")
    q.add_argument("--csv-out", required=True, help="where to write path, label, score")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        (train if args.command == "train" else predict)(args)
    except (ConfigError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"biaslab {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
