"""bias: draw the injected bias variable S ~ Bernoulli(p_y) for every image."""

import argparse

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.data.bias import bias_table
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = load_section("bias")

    index = artifacts.read_table(args.index, required=("row", "label"))
    table = bias_table(index, cfg.kind, cfg.p0, cfg.p1, cfg.seed)
    artifacts.write_parquet(table, args.out)
    if "s" in table:
        by_label = table.assign(label=index["label"].to_numpy()).groupby("label")["s"].mean()
        detail = ", ".join(f"P(S=1|y={y})={p:.2f}" for y, p in by_label.items())
    else:
        detail = "no injected bias"
    print(f"bias: {cfg.kind} (p0={cfg.p0}, p1={cfg.p1}); observed {detail} -> {args.out}")


if __name__ == "__main__":
    run(main, "bias")
