"""split: stratified, patient-grouped train/val/test assignment."""

import argparse

from biaslab import io
from biaslab.config import load_section
from biaslab.split import stratified_split
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", required=True)
    parser.add_argument("--bias", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = load_section("split")

    table = io.read_table(args.index, required=("row", "label")).merge(
        io.read_table(args.bias, required=("row",)), on="row", how="left")
    split = stratified_split(table, cfg.fractions, cfg.stratify, cfg.seed)
    io.write_parquet(split, args.out)
    counts = split["split"].value_counts().reindex(["train", "val", "test"]).to_dict()
    print(f"split: {counts} stratified on {cfg.stratify} -> {args.out}")


if __name__ == "__main__":
    run(main, "split")
