"""evaluate: test metrics and fairness gaps of every (scheme, method), with bootstrap intervals,
averaged over the training seeds.

Long decisions of a multi-label run (a ``finding`` column): the same per finding, plus the "any
finding" rows (underdiagnosis), the p-values of all findings corrected together
(:mod:`biaslab.fairness.findings`); grid.csv, seeds.csv and groups.csv get a ``finding``
column first, the headline names the worst finding."""

import argparse
import sys
from pathlib import Path

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.fairness.evaluate import Evaluation, evaluate_seeds
from biaslab.fairness.findings import (
    ANY,
    FindingsEvaluation,
    any_thresholds,
    by_finding,
    evaluate_findings,
    findings_headline,
    reach_warning,
    worst_finding,
)
from biaslab.fairness.flags import (
    add_not_applicable,
    add_training_flags,
    seed_flags,
    seed_thresholds,
)
from biaslab.fairness.headline import grid_warnings, headline, summary_line
from biaslab.fairness.recommend import choose
from biaslab.fairness.thresholds.findings import is_multilabel
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
    decisions = each(args.decisions, ".parquet", artifacts.read_table)
    options = dict(shift_p=cfg.shift_p, n_boot=cfg.n_boot,
                   level=cfg.level, seed=cfg.seed, min_group_size=cfg.min_group_size,
                   intersect=cfg.intersect, bins=cfg.bins, pareto_gap=cfg.pareto_gap,
                   resample=cfg.resample, min_cell=cfg.min_cell,
                   max_accuracy_loss=cfg.max_accuracy_loss, n_perm=cfg.n_perm,
                   correction=cfg.correction)
    health = (seed_flags(each(args.health, ".json",
                              lambda path: artifacts.read_json(path).get("degenerate")))
              if args.health else None)  # train's own check (e.g. the same validation accuracy)
    fitted = each(args.thresholds, ".json", artifacts.read_json) if args.thresholds else None
    gap = f"{cfg.groups[0]}.{cfg.pareto_gap}"
    if is_multilabel(next(iter(decisions[schemes[0]].values()))):
        evaluation, figures, summary, warnings = multilabel(
            decisions, attributes, cfg, options, health, fitted, gap)
    else:
        # the library warns of what its figures cannot say (a metric undefined for a group
        # lacking a class): stages.run says it as this stage's lines
        evaluation = evaluate_seeds(decisions, attributes, cfg.groups, **options)
        grid = flagged(evaluation.grid, health, fitted, cfg.max_accuracy_loss)
        # everything the stage says is computed before the first write: a failure writes
        # nothing
        figures = headline(grid, cfg.groups)
        summary = summary_line(grid, gap)
        warnings = grid_warnings(grid, gap)  # raw DI traded where base rates differ, too
        evaluation = Evaluation(grid, evaluation.per_seed, evaluation.per_group)
    grid = evaluation.grid

    artifacts.write_json(figures, args.headline)
    artifacts.write_csv(grid, args.grid)
    artifacts.write_csv(evaluation.per_seed, args.seeds)
    artifacts.write_csv(evaluation.per_group, args.groups)
    for warning in warnings:
        print(f"evaluate: warning: {warning}", file=sys.stderr)
    print(f"evaluate: {summary} -> {args.headline}")


def flagged(grid, health, fitted, max_accuracy_loss):
    """``grid`` with train's flags, postprocess's skipped methods (said, not silently
    missing) and the pair recommended again (a model training flagged is never recommended)."""
    if health:
        grid = add_training_flags(grid, health)
    if fitted:
        grid = add_not_applicable(grid, seed_thresholds(fitted))
    return choose(grid, max_accuracy_loss)


def multilabel(decisions, attributes, cfg, options, health, fitted, gap):
    """A multi-label run (long decisions): every finding's rows flagged and chosen on their
    own; the "any finding" rows miss the methods some finding misses."""
    evaluation = evaluate_findings(decisions, attributes, cfg.groups, **options)

    def step(finding, rows):
        mine = None if not fitted else {s: {k: (any_thresholds(f) if finding == ANY else
                                                f[finding]) for k, f in by_seed.items()}
                                        for s, by_seed in fitted.items()}
        return flagged(rows, health, mine, cfg.max_accuracy_loss)

    grid = by_finding(evaluation.grid, step)
    worst = worst_finding(grid)
    rows = grid[grid["finding"] == (worst or ANY)].drop(columns="finding")
    summary = (f"{evaluation.tests} p-values corrected together over "
               f"{grid['finding'].nunique() - 1} findings; worst finding {worst}: "
               + summary_line(rows, gap))
    warnings = [f"{finding}: {line}" for finding, part in grid.groupby("finding", sort=False)
                for line in grid_warnings(part.drop(columns="finding"), gap)]
    reach = reach_warning(evaluation.tests, cfg.n_perm, cfg.correction)
    warnings += [reach] if reach else []
    return (FindingsEvaluation(grid, evaluation.per_seed, evaluation.per_group,
                               evaluation.tests),
            findings_headline(grid, cfg.groups, evaluation.tests), summary, warnings)


if __name__ == "__main__":
    run(main, "evaluate")
