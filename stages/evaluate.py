"""evaluate: test metrics and fairness gaps of every (scheme, method), with bootstrap intervals."""

import argparse
from pathlib import Path

from biaslab import io
from biaslab.config import load_section
from biaslab.evaluate import evaluate_decisions, headline
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("decisions", "index", "bias", "headline", "grid", "groups"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    cfg, schemes = load_section("evaluate"), load_section("weights").schemes

    attributes = io.read_rows(args.index, args.bias)
    # read only the schemes asked for: a stale file of a removed scheme is ignored
    decisions = {s: io.read_table(Path(args.decisions) / f"{s}.parquet") for s in schemes}
    grid, per_group = evaluate_decisions(
        decisions, attributes, cfg.groups, shift_p=cfg.shift_p, n_boot=cfg.n_boot,
        level=cfg.level, seed=cfg.seed, min_group_size=cfg.min_group_size,
        intersect=cfg.intersect, bins=cfg.bins, pareto_gap=cfg.pareto_gap)
    io.write_json(headline(grid, cfg.groups), args.headline)
    io.write_csv(grid, args.grid)
    io.write_csv(per_group, args.groups)
    best = grid.loc[grid["balanced_accuracy"].idxmax()]
    print(f"evaluate: {len(grid)} (scheme, method) pairs, {int(grid['pareto'].sum())} on the "
          f"Pareto front; best balanced accuracy {best['balanced_accuracy']:.3f} "
          f"({best['scheme']}/{best['method']}) -> {args.headline}")


if __name__ == "__main__":
    run(main, "evaluate")
