"""postprocess@SCHEME: fit each threshold method on validation, apply it to test."""

import argparse

import pandas as pd

from biaslab import io
from biaslab.config import load_section
from biaslab.thresholds import make_postprocessor
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("predictions", "index", "out", "thresholds"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    cfg = load_section("postprocess")

    preds = io.read_table(args.predictions, required=("row", "split", "score")).merge(
        io.read_table(args.index, required=("row", "label"))[["row", "label"]], on="row")
    val, test = preds[preds["split"] == "val"], preds[preds["split"] == "test"]
    frames, fitted = [], {}
    for method in cfg.methods:
        post = make_postprocessor(method, fixed_threshold=cfg.fixed_threshold)
        post.fit(val["score"].to_numpy(), val["label"].to_numpy())
        fitted[method] = post.params_()
        for split, part in (("val", val), ("test", test)):
            out = pd.DataFrame({"row": part["row"].to_numpy(), "split": split, "method": method,
                                "threshold": post.threshold_,
                                "decision": post.predict(part["score"].to_numpy())})
            for col in ("score_s0", "score_s1"):  # counterfactual decisions, same threshold
                if col in part:
                    out[col.replace("score", "decision")] = post.predict(part[col].to_numpy())
            frames.append(out)
    io.write_parquet(pd.concat(frames, ignore_index=True), args.out)
    io.write_json(fitted, args.thresholds)
    summary = ", ".join(f"{m} t={p['threshold']:.3f}" for m, p in fitted.items())
    print(f"postprocess: fit on {len(val)} val rows, applied to {len(test)} test rows: "
          f"{summary} -> {args.out}")


if __name__ == "__main__":
    run(main, "postprocess")
