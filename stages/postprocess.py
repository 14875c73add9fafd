"""postprocess@SCHEME: fit each threshold method on validation, apply it to val and test.

Per-group methods take the group of each row from ``postprocess.groups`` (``s`` and/or index
columns, intersected). The counterfactual decisions ``decision_s0``/``decision_s1`` read the
score with S forced to 0/1 *and* the group with S forced likewise, so a method with per-S
thresholds applies the forced group's threshold.
"""

import argparse

import pandas as pd

from biaslab import io
from biaslab.config import load_section
from biaslab.groups import group_keys
from biaslab.thresholds import make_postprocessor
from stages import run


def _keys(post, part, groups):
    """Group keys for per-group methods; ``fixed`` and ``youden`` need none."""
    return group_keys(part, groups) if hasattr(post, "threshold_of") else None


def _decisions(post, part, split, method, groups):
    keys = _keys(post, part, groups)
    out = pd.DataFrame({"row": part["row"].to_numpy(), "split": split, "method": method,
                        "threshold": post.threshold_ if keys is None else post.threshold_of(keys),
                        "score": part["score"].to_numpy(),
                        "decision": post.predict(part["score"].to_numpy(), keys)})
    for value in (0, 1):  # counterfactual decisions: score and group under S forced
        col = f"score_s{value}"
        if col in part:
            forced = _keys(post, part.assign(s=value), groups) if "s" in groups else keys
            out[f"decision_s{value}"] = post.predict(part[col].to_numpy(), forced)
    return out


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
        post = make_postprocessor(method, fixed_threshold=cfg.fixed_threshold,
                                  tolerance=cfg.tolerance, seed=cfg.seed)
        post.fit(val["score"].to_numpy(), val["label"].to_numpy(), _keys(post, val, cfg.groups))
        fitted[method] = post.params_()
        frames += [_decisions(post, part, split, method, cfg.groups)
                   for split, part in (("val", val), ("test", test))]
    io.write_parquet(pd.concat(frames, ignore_index=True), args.out)
    io.write_json(fitted, args.thresholds)
    print(f"postprocess: {len(cfg.methods)} methods ({', '.join(cfg.methods)}) fit on "
          f"{len(val)} val rows, groups {cfg.groups}, applied to {len(test)} test rows "
          f"-> {args.out}")


if __name__ == "__main__":
    run(main, "postprocess")
