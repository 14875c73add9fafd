"""weights@SCHEME: per-row sample weights of the training split under one scheme.

One file per scheme (not one column per scheme in a shared table) so that adding a scheme
leaves the other schemes' weights, and so their trained models, untouched.
"""

import argparse

import numpy as np

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.fairness.weights import compute_weights
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheme", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--bias", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = load_section("weights")

    table = artifacts.read_rows(args.index, args.bias, args.split)
    train = table[table["split"] == "train"]
    weights = compute_weights(train, args.scheme, cfg.groups, all_rows=table,
                              sample_by=cfg.sample_by, column=cfg.column, seed=cfg.seed)
    out = table[["row"]].assign(weight=np.nan, mode=cfg.mode)
    out.loc[train.index, "weight"] = weights
    artifacts.write_parquet(out, args.out)
    print(f"weights@{args.scheme}: {len(train)} training rows, weight range "
          f"[{weights.min():.3f}, {weights.max():.3f}], mode {cfg.mode} -> {args.out}")


if __name__ == "__main__":
    run(main, "weights")
