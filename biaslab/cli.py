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
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from biaslab.config import ConfigError, DataConfig, TrainConfig


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
    from biaslab.split import stratified_split
    from biaslab.train import TrainData, fit, save_checkpoint

    index, pixels = _images(args)
    split = stratified_split(index, {"train": 0.8, "val": 0.2, "test": 0.0}, ["label"],
                             args.seed)
    table = index.merge(split, on="row")
    weights = None
    if args.weights_col:
        weights = pd.to_numeric(table[args.weights_col], errors="raise").to_numpy(float)

    def part(name):
        mask = (table["split"] == name).to_numpy()
        return TrainData(table["row"].to_numpy()[mask], table["label"].to_numpy()[mask],
                         table["s"].to_numpy()[mask] if "s" in table else None,
                         None if weights is None else weights[mask] / weights[mask].mean())

    config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, device=args.device, seed=args.seed)
    model, curves = fit(pixels, part("train"), part("val"), config)
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, config, 2 if "s" in table else 1, logdir / "model.pt")
    curves.to_csv(logdir / "curves.csv", index=False)
    table[["row", "source", "label", "split"]].to_csv(logdir / "split.csv", index=False)
    print(f"train: {len(table)} images, best val_loss {curves['val_loss'].min():.4f} -> "
          f"{logdir / 'model.pt'}")


def predict(args) -> None:
    from biaslab.predict import predict_scores
    from biaslab.train import load_checkpoint

    if not Path(args.ckpt).is_file():
        raise FileNotFoundError(f"--ckpt: {args.ckpt} not found; give the model.pt that "
                                "`python -m biaslab train` (or the pipeline) wrote")
    model, _ = load_checkpoint(args.ckpt)
    index, pixels = _images(args)
    needs_s = model.state_dict()[next(iter(model.state_dict()))].shape[1] == 2
    if needs_s and "s" not in index:
        raise ValueError(f"{args.csv}: the model in {args.ckpt} was trained with the bias "
                         "channel; the table needs an 's' column (0/1)")
    table = index.assign(split="test")
    if not needs_s:
        table = table.drop(columns=["s"], errors="ignore")
    scores = predict_scores(model, pixels, table, bias_seed=0)
    out = index[["source", "label"]].assign(score=scores["score"].to_numpy())
    out.to_csv(args.csv_out, index=False)
    print(f"predict: {len(out)} images scored with {args.ckpt} -> {args.csv_out}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m biaslab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("train", "predict"):
        s = sub.add_parser(name, help=f"{name} from a table of image paths")
        s.add_argument("--datadir", required=True, type=Path, help="folder of the images")
        s.add_argument("--csv", required=True, help="table under --datadir (path, label, ...)")
        s.add_argument("--path-col", default="path", help="image path column (default: path)")
        s.add_argument("--label-col", default="label", help="0/1 label column (default: label)")
        s.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
        s.add_argument("--workers", type=int, default=0, help="decoding processes (0: cores)")
        s.add_argument("--weights-col", help="sample-weight column (train only)")
    t = sub.choices["train"]
    t.add_argument("--logdir", required=True, help="where model.pt and curves.csv go")
    t.add_argument("--model", default="small_cnn", help="small_cnn, alexnet, resnet18/34/50")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--seed", type=int, default=0)
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
