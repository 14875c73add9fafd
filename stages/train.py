"""train@SCHEME: train the model on the training split with the scheme's sample weights."""

import argparse
from pathlib import Path

import numpy as np

from biaslab import io
from biaslab.config import load_section
from biaslab.train import TrainData, fit, save_checkpoint
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheme", required=True)
    for name in ("pixels", "index", "bias", "split", "weights", "model", "curves"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    cfg, bias_cfg = load_section("train"), load_section("bias")

    pixels = np.load(args.pixels, mmap_mode="r")
    table = io.read_table(args.index, required=("row", "label")).merge(
        io.read_table(args.bias), on="row").merge(io.read_table(args.split), on="row").merge(
        io.read_table(args.weights, required=("row", "weight")), on="row")
    has_s = "s" in table.columns

    def part(name):
        rows = table[table["split"] == name]
        return TrainData(rows=rows["row"].to_numpy(), labels=rows["label"].to_numpy(),
                         s=rows["s"].to_numpy() if has_s else None,
                         weights=rows["weight"].to_numpy())

    train, val = part("train"), part("val")
    print(f"train@{args.scheme}: {len(train.rows)} train / {len(val.rows)} val images")
    model, curves = fit(pixels, train, val, cfg, bias_seed=bias_cfg.seed)
    Path(args.model).parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(args.model) as tmp:
        save_checkpoint(model, cfg, 2 if has_s else 1, tmp)
    io.write_csv(curves, args.curves)
    best = curves.loc[curves["val_loss"].idxmin()]
    print(f"train@{args.scheme}: best epoch {int(best['epoch'])}/{cfg.epochs}, val_loss "
          f"{best['val_loss']:.4f}, val_acc {best['val_acc']:.3f}, "
          f"{curves['img_per_s'].mean():.0f} img/s -> {args.model}")


if __name__ == "__main__":
    run(main, "train")
