"""postprocess@SCHEME: fit each threshold method on validation, apply it to val and test.

Per-group methods take the group of each row from ``postprocess.groups`` (``s`` and/or index
columns, intersected); :func:`biaslab.thresholds.decide` writes the decisions, counterfactual
ones included.
"""

import argparse

import pandas as pd

from biaslab import io
from biaslab.config import load_section
from biaslab.thresholds import decide, fit_postprocessor
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("predictions", "index", "bias", "out", "thresholds"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    cfg = load_section("postprocess")

    preds = io.read_table(args.predictions, required=("row", "split", "score")).merge(
        io.read_rows(args.index, args.bias), on="row")
    val, test = preds[preds["split"] == "val"], preds[preds["split"] == "test"]
    frames, fitted = [], {}
    for method in cfg.methods:
        post = fit_postprocessor(method, val, cfg.groups, fixed_threshold=cfg.fixed_threshold,
                                 tolerance=cfg.tolerance, seed=cfg.seed)
        fitted[method] = post.params_()
        frames += [decide(post, part, cfg.groups, split=split, method=method)
                   for split, part in (("val", val), ("test", test))]
    io.write_parquet(pd.concat(frames, ignore_index=True), args.out)
    io.write_json(fitted, args.thresholds)
    print(f"postprocess: {len(cfg.methods)} methods ({', '.join(cfg.methods)}) fit on "
          f"{len(val)} val rows, groups {cfg.groups}, applied to {len(test)} test rows "
          f"-> {args.out}")


if __name__ == "__main__":
    run(main, "postprocess")
