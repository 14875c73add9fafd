"""evaluate: test metrics and fairness gaps of every (scheme, method), with bootstrap intervals,
averaged over the training seeds."""

import argparse
import sys
from pathlib import Path

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.fairness.evaluate import evaluate_seeds
from biaslab.fairness.flags import (
    add_not_applicable,
    add_training_flags,
    seed_flags,
    seed_thresholds,
)
from biaslab.fairness.headline import grid_warnings, headline, summary_line
from biaslab.fairness.recommend import choose
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("decisions", "index", "bias", "headline", "grid", "seeds", "groups"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--health", help="folder of train's SCHEME/seedK.json model checks")
    parser.add_argument("--thresholds", help="folder of postprocess's SCHEME/seedK.json: a "
                        "method it could not fit is a grid row saying why")
    args = parser.parse_args()
    cfg, schemes = load_section("evaluate"), load_section("weights").schemes
    seeds = load_section("train").seeds

    def each(folder: str, suffix: str, read) -> dict[str, dict[int, object]]:
        # only the schemes and seeds asked for: a stale file of a removed one is ignored
        return {s: {k: read(Path(folder) / s / f"seed{k}{suffix}") for k in seeds}
                for s in schemes}

    attributes = artifacts.read_rows(args.index, args.bias)
    # the library warns of what its figures cannot say (a metric undefined for a group lacking
    # a class): stages.run says it as this stage's lines
    evaluation = evaluate_seeds(
        each(args.decisions, ".parquet", artifacts.read_table), attributes, cfg.groups,
        shift_p=cfg.shift_p, n_boot=cfg.n_boot,
        level=cfg.level, seed=cfg.seed, min_group_size=cfg.min_group_size,
        intersect=cfg.intersect, bins=cfg.bins, pareto_gap=cfg.pareto_gap,
        resample=cfg.resample, min_cell=cfg.min_cell,
        max_accuracy_loss=cfg.max_accuracy_loss, n_perm=cfg.n_perm,
        correction=cfg.correction)
    grid = evaluation.grid
    if args.health:  # train's own check (e.g. the same validation accuracy every epoch)
        flags = each(args.health, ".json", lambda path: artifacts.read_json(path).get("degenerate"))
        grid = add_training_flags(grid, seed_flags(flags))
    if args.thresholds:  # postprocess's skipped methods: said, not silently missing
        fitted = each(args.thresholds, ".json", artifacts.read_json)
        grid = add_not_applicable(grid, seed_thresholds(fitted))
    grid = choose(grid, cfg.max_accuracy_loss)  # a model training flagged is never recommended
    # everything the stage says is computed before the first write: a failure writes nothing
    figures = headline(grid, cfg.groups)
    gap = f"{cfg.groups[0]}.{cfg.pareto_gap}"
    summary = summary_line(grid, gap)
    warnings = grid_warnings(grid, gap)  # raw DI traded where base rates differ, too

    artifacts.write_json(figures, args.headline)
    artifacts.write_csv(grid, args.grid)
    artifacts.write_csv(evaluation.per_seed, args.seeds)
    artifacts.write_csv(evaluation.per_group, args.groups)
    for warning in warnings:
        print(f"evaluate: warning: {warning}", file=sys.stderr)
    print(f"evaluate: {summary} -> {args.headline}")


if __name__ == "__main__":
    run(main, "evaluate")
