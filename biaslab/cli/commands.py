"""``python -m biaslab train|predict``: train or score outside DVC, with the course's options.

    python -m biaslab train --datadir DIR --csv metadata.csv [--weights-col w] --logdir runs/a
    python -m biaslab predict --datadir DIR --csv test.csv --ckpt runs/a/model.pt --csv-out p.csv

The table (under --datadir) has an image path column and a 0/1 label column. ``train`` splits
it (stratified on the label, patients kept together), trains and writes ``model.pt``,
``curves.csv`` and ``split.csv`` into --logdir. ``predict`` only loads a checkpoint (no
training) and writes one score per image. S is not drawn here: when the table has an ``s``
column (0/1), ``train`` shows it to the model as --bias-kind says (the noise channel by default,
or a patch) and records how in ``model.pt``; ``predict`` shows it the same way, so a model
trained with S (also one of the pipeline's) needs the column.
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
from biaslab.data.bias import BiasSpec

# the bias section's keys that say how S is shown (S itself is the table's s column, not drawn)
BIAS_OPTIONS = ("kind", "seed", "patch_size", "patch_position", "patch_value")


def _images(args) -> tuple[pd.DataFrame, np.ndarray]:
    """The table's usable rows and their prepared pixels; rejected images are reported."""
    from biaslab.data.prepare import decode_source
    from biaslab.data.sources import load_source

    header = pd.read_csv(Path(args.datadir) / args.csv, nrows=0).columns
    keep = ([args.weights_col] if args.weights_col else []) + (["s"] if "s" in header else [])
    data = DataConfig(source="csv", root=str(args.datadir), table=args.csv,
                      path_column=args.path_col, label_column=args.label_col, attributes=keep)
    src = load_source(data, Path(args.datadir))
    if "s" in src.index:  # kept as text, as the csv source keeps extra columns: S is 0/1
        src.index["s"] = _zero_one(src.index["s"], f"{args.csv}: column s")
    pixels = np.zeros((len(src.paths), args.size, args.size), dtype=np.uint8)
    keep, rejected = decode_source(src, args.size, pixels, workers=args.workers)
    for row in rejected.itertuples():
        print(f"rejected: {row.path}: {row.reason}", file=sys.stderr)
    index = src.index[keep].reset_index(drop=True)
    index.insert(0, "row", np.arange(len(index)))
    return index, pixels[keep]


def train(args) -> None:
    from biaslab.data.split import stratified_split
    from biaslab.model.batches import TrainData
    from biaslab.model.checkpoint import save_checkpoint
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
    index, pixels = _images(args)
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
        return
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(fitted.model, config, train_data.in_channels(bias), logdir / "model.pt",
                    bias=bias)
    fitted.curves.to_csv(logdir / "curves.csv", index=False)
    table[["row", "source", "label", "split"]].to_csv(logdir / "split.csv", index=False)
    if fitted.degenerate:
        print(f"train: warning: {fitted.degenerate}", file=sys.stderr)
    print(f"train: {len(table)} images, best val_loss {fitted.curves['val_loss'].min():.4f} -> "
          f"{logdir / 'model.pt'}")


def predict(args) -> None:
    from biaslab.model.checkpoint import load_bias, load_checkpoint
    from biaslab.model.predict import predict_scores

    if not Path(args.ckpt).is_file():
        raise FileNotFoundError(f"--ckpt: {args.ckpt} not found; give the model.pt that "
                                "`python -m biaslab train` (or the pipeline) wrote")
    model, _ = load_checkpoint(args.ckpt)
    bias = load_bias(args.ckpt)  # S is shown as in training
    index, pixels = _images(args)
    if bias.kind != "none" and "s" not in index:
        raise ValueError(f"{args.csv}: the model in {args.ckpt} was trained with S shown as "
                         f"{bias.kind}; the table needs an 's' column (0/1)")
    table = index.assign(split="test")
    if bias.kind == "none":
        table = table.drop(columns=["s"], errors="ignore")
    scores = predict_scores(model, pixels, table, bias=bias)
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
    t = sub.choices["train"]
    t.add_argument("--logdir", required=True, help="where model.pt and curves.csv go")
    t.add_argument("--model", default=train_cfg.model, help="small_cnn, alexnet, resnet18/34/50")
    for flag, key in (("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--lr", "lr")):
        default = getattr(train_cfg, key)
        t.add_argument(flag, type=type(default), default=default, help=f"default: {default}")
    t.add_argument("--seed", type=int, default=train_cfg.seeds[0],
                   help=f"training seed (default: the first of train.seeds, {train_cfg.seeds[0]})")
    t.add_argument("--device", default=train_cfg.device, help="auto, cpu or cuda")
    for key in BIAS_OPTIONS:  # how S is shown when the table has an s column
        info = BiasConfig.model_fields[key]
        t.add_argument("--bias-" + key.replace("_", "-"), type=type(info.default),
                       default=info.default,
                       help=f"bias.{key}: {info.description} (default: {info.default})")
    q = sub.choices["predict"]
    q.add_argument("--ckpt", required=True, help="model.pt written by train (or the pipeline)")
    q.add_argument("--csv-out", required=True, help="where to write path, label, score")
    return p


def _zero_one(values: pd.Series, what: str) -> pd.Series:
    """``values`` (text or numbers) as int8 0/1; anything else is an error naming it."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values[~numbers.isin([0, 1])]
    if len(bad):
        shown = ", ".join(sorted({str(v) for v in bad})[:5])
        raise ValueError(f"{what}: expected only 0 and 1, got {shown} ({len(bad)} row(s))")
    return numbers.astype(np.int8)


def _as_options(message: str) -> str:
    """An error about params.yaml keys, told with the command line's options instead."""
    message = message.replace("params.yaml: ", "").replace("prepare.size", "--size")
    return re.sub(r"\b(train|bias)\.(\w+)", lambda m: ("--" if m[1] == "train" else "--bias-")
                  + m[2].replace("_", "-"), message)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        (train if args.command == "train" else predict)(args)
    except (ConfigError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"biaslab {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
