"""predict@SCHEME-SEED: scores on val and test, and counterfactual scores with S forced to 0
and 1; one row per image and finding when the model scores several findings."""

import argparse

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.data.bias import BiasSpec
from biaslab.model.checkpoint import load_checkpoint, load_findings
from biaslab.model.predict import predict_scores
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("model", "pixels", "index", "bias", "split", "out"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    bias = BiasSpec.from_config(load_section("bias"))

    model, _ = load_checkpoint(args.model)
    findings = load_findings(args.model)
    table = artifacts.read_rows(args.index, args.bias, args.split)
    pixels = artifacts.read_pixels(args.pixels, n_rows=len(table))
    table = table[table["split"].isin(["val", "test"])]
    scores = predict_scores(model, pixels, table, bias=bias, findings=findings)
    artifacts.write_parquet(scores, args.out)
    cols = ", ".join(c for c in scores.columns if c.startswith("score"))
    several = f" x {len(findings)} findings" if findings else ""
    print(f"predict: {len(table)} val+test rows{several} scored ({cols}) -> {args.out}")


if __name__ == "__main__":
    run(main, "predict")
