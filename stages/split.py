"""split: stratified, patient-grouped train/val/test assignment (or the source's own split)."""

import argparse
import sys
import warnings

from biaslab import io
from biaslab.config import load_section
from biaslab.split import SplitWarning, source_split, stratified_split, subsample_train
from stages import present_columns, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", required=True)
    parser.add_argument("--bias", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = load_section("split")

    table = io.read_rows(args.index, args.bias)
    stratify = present_columns(cfg.stratify, table, "split", "not stratified on it")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SplitWarning)
        split = source_split(table) if cfg.use_source else stratified_split(
            table, cfg.fractions, stratify, cfg.seed, min_stratum=cfg.min_stratum)
    for warning in caught:
        print(f"split: warning: {warning.message}", file=sys.stderr)
    if cfg.train_size:
        split["split"] = subsample_train(table, split["split"], size=cfg.train_size,
                                         composition=cfg.train_composition, seed=cfg.seed)
    io.write_parquet(split, args.out)
    counts = split["split"].value_counts().to_dict()
    how = "the source's split" if cfg.use_source else f"stratified on {stratify}"
    print(f"split: {counts} ({how}) -> {args.out}")


if __name__ == "__main__":
    run(main, "split")
