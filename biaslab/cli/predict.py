"""Score a table of image paths with a model.pt that `biaslab train` or the pipeline wrote.

The table (under --datadir) has an image path column and a 0/1 label column; --csv-out gets one
row per image: source, label, score. Only the checkpoint is loaded (no training). It records how
S was shown in training, and S is shown the same way here: a model trained with S needs an 's'
column (0/1) in the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from biaslab.cli.image_table import add_table_arguments, images

EXAMPLES = """\
  biaslab predict --datadir data/cxr --csv test.csv --ckpt runs/a/model.pt --csv-out scores.csv
  biaslab predict --datadir data/cxr --csv metadata.csv --path-col file --label-col y \\
      --ckpt models/none/seed0/model.pt --csv-out scores.csv    # a model of the pipeline
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_arguments(parser)
    parser.add_argument("--ckpt", required=True,
                        help="model.pt written by train (or the pipeline)")
    parser.add_argument("--csv-out", required=True, help="where to write path, label, score")


def run(args) -> int:
    from biaslab.model.checkpoint import load_bias, load_checkpoint
    from biaslab.model.predict import predict_scores

    if not Path(args.ckpt).is_file():
        raise FileNotFoundError(f"--ckpt: {args.ckpt} not found; give the model.pt that "
                                "`biaslab train` (or the pipeline) wrote")
    model, _ = load_checkpoint(args.ckpt)
    bias = load_bias(args.ckpt)  # S is shown as in training
    index, pixels = images(args)
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
    return 0
