"""What ``biaslab train`` and ``biaslab predict`` share: the table of image paths they read, its
options and its decoded images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from biaslab.config import DataConfig


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    data = DataConfig()  # the pipeline's defaults are the command's
    parser.add_argument("--datadir", required=True, type=Path, help="folder of the images")
    parser.add_argument("--csv", required=True, help="table under --datadir (path, label, ...)")
    parser.add_argument("--path-col", default=data.path_column,
                        help=f"image path column (default: {data.path_column})")
    parser.add_argument("--label-col", default=data.label_column,
                        help=f"0/1 label column (default: {data.label_column})")
    parser.add_argument("--size", type=int, default=64,
                        help="image side in pixels (default: 64)")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0: cores)")
    parser.add_argument("--weights-col", help="sample-weight column (train only)")


def images(args) -> tuple[pd.DataFrame, np.ndarray]:
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


def _zero_one(values: pd.Series, what: str) -> pd.Series:
    """``values`` (text or numbers) as int8 0/1; anything else is an error naming it."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values[~numbers.isin([0, 1])]
    if len(bad):
        shown = ", ".join(sorted({str(v) for v in bad})[:5])
        raise ValueError(f"{what}: expected only 0 and 1, got {shown} ({len(bad)} row(s))")
    return numbers.astype(np.int8)
