"""train@SCHEME: train the model on the training split with the scheme's sample weights."""

import argparse
import os
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
    table = io.read_rows(args.index, args.bias, args.split, args.weights)
    has_s = "s" in table.columns

    def part(name):
        rows = table[table["split"] == name]
        return TrainData(rows=rows["row"].to_numpy(), labels=rows["label"].to_numpy(),
                         s=rows["s"].to_numpy() if has_s else None,
                         weights=rows["weight"].to_numpy())

    train, val = part("train"), part("val")
    # weights.mode travels in the weights file (a dep of this stage), so changing it retrains;
    # a weighted sampler redraws the training rows in proportion to weight at every epoch
    train.sampler = "mode" in table and bool((table["mode"] == "sampler").any())
    print(f"train@{args.scheme}: {len(train.rows)} train / {len(val.rows)} val images")
    # a per-epoch checkpoint beside the model (not a DVC output, so DVC keeps it when a killed
    # run is started again): training resumes from it, and it is removed once the model is saved
    resume = Path(args.model).with_name("resume.pt")
    model, curves = fit(pixels, train, val, cfg, bias_seed=bias_cfg.seed, checkpoint=resume)
    if int(os.environ.get("RANK", 0)) != 0:  # under torchrun only the first process writes
        return
    save_checkpoint(model, cfg, 2 if has_s else 1, args.model)  # atomic
    # speed goes to the summary line, not the artifact: same params and seed, same file
    io.write_csv(curves.drop(columns="img_per_s"), args.curves)
    resume.unlink(missing_ok=True)
    best = curves.loc[curves["val_loss"].idxmin()]
    print(f"train@{args.scheme}: best epoch {int(best['epoch'])}/{cfg.epochs}, val_loss "
          f"{best['val_loss']:.4f}, val_acc {best['val_acc']:.3f}, "
          f"{curves['img_per_s'].mean():.0f} img/s -> {args.model}")


if __name__ == "__main__":
    run(main, "train")
