"""report: the verdict (metrics/verdict.json) and one self-contained HTML page from the metrics,
predictions, decisions, curves, audit, the explain stage's figures and a few images.

A multi-label run's grid (a ``finding`` column) adds a "Findings" section (verdict per finding
and overall, the finding x group heatmap, the underdiagnosis rates: biaslab.report.findings);
the rest of the page shows its worst finding."""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.config.report import ReportConfig
from biaslab.data.bias import BiasSpec, model_inputs
from biaslab.data.group_keys import unit_word
from biaslab.fairness.finding_rows import ANY
from biaslab.fairness.ranks import rank_methods
from biaslab.fairness.verdict import Criterion, judge, metric, model_warnings, summarise
from biaslab.report import build_report, data, examples_figure, inputs
from biaslab.report.findings import findings_report
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("grid", "groups", "curves", "audit", "audit_tables", "pixels", "index", "bias",
                 "out"):
        parser.add_argument(f"--{name.replace('_', '-')}", required=True)
    parser.add_argument("--verdict", help="metrics/verdict.json, the verdict as a DVC metric")
    parser.add_argument("--predictions", help="predict's folder: ROC and calibration per group")
    parser.add_argument("--decisions", help="postprocess's folder: operating points, confusion")
    parser.add_argument("--explain", help="the explain stage's folder (manifest.json)")
    parser.add_argument("--sweep", help="the sweep's figure, linked when it exists")
    parser.add_argument("--seeds", help="metrics/seeds.csv: the rank test of the methods")
    args = parser.parse_args()
    schemes, cfg = load_section("weights").schemes, load_section("report")
    evaluate, bias_cfg = load_section("evaluate"), load_section("bias")
    seeds = load_section("train").seeds  # one model per scheme and seed

    grid, per_group = pd.read_csv(args.grid), pd.read_csv(args.groups)
    table = artifacts.read_rows(args.index, args.bias)
    unit = unit_word(table)  # what groups.csv's patients column counts: patients only with ids
    criteria = [Criterion(**c.model_dump()) for c in cfg.criteria]
    multi = None
    if "finding" in grid.columns:  # a multi-label run: the page shows its worst finding
        multi = findings_report(grid, per_group, criteria, unit=unit, gap=cfg.findings_gap,
                                alpha=cfg.findings_alpha, level=evaluate.level)
        grid, per_group = multi.grid, multi.per_group
        verdict, summary = multi.verdict, multi.summary
    else:
        verdict = judge(grid, per_group, criteria, unit=unit)
        summary = summarise(verdict, grid)
    gap = f"{evaluate.groups[0]}.{evaluate.pareto_gap}"
    warnings = model_warnings(grid, per_group, min_group_size=cfg.min_group_size,
                              min_class_size=cfg.min_class_size, unit=unit, gap=gap)
    scores = counts = None
    if args.predictions and args.decisions and multi is None:  # long files: per finding
        groups = [g for g in evaluate.groups if g in table.columns]
        first = [min(seeds)]  # the figures show the first seed's model: read only its files
        scores = data.test_scores(inputs.per_scheme(args.predictions, schemes, first),
                                  table, groups)
        counts = data.decision_counts(inputs.per_scheme(args.decisions, schemes, first),
                                      table, groups)
    sweep = Path(args.sweep) if args.sweep else None
    page = build_report(
        grid=grid, per_group=per_group, audit=artifacts.read_json(args.audit),
        prevalence=pd.read_csv(Path(args.audit_tables) / "prevalence.csv"),
        groups=evaluate.groups, curves=inputs.curves(args.curves, schemes, seeds),
        verdict=verdict, summary=summary, warnings=warnings, scores=scores, counts=counts,
        gap=gap, max_accuracy_loss=evaluate.max_accuracy_loss,
        examples=_examples(table, args.pixels, BiasSpec.from_config(bias_cfg)),
        explain=inputs.explain(args.explain, schemes), bias=bias_cfg.kind, unit=unit,
        resample=evaluate.resample, ranks=_ranks(args.seeds, cfg.rank_by, evaluate),
        sweep=_relative(sweep, Path(args.out).parent) if sweep and sweep.exists() else None,
        findings=multi.items if multi else ())
    if args.verdict:
        artifacts.write_json(metric(verdict, summary) | (multi.metric if multi else {}),
                             args.verdict)
    artifacts.write_text(page, args.out)
    top = summary.head(1).to_dict("records")
    said = f"{top[0]['scheme']} / {top[0]['method']}: {top[0]['verdict']}" if top else "none"
    if multi:
        said = f"{multi.metric['overall']} over the findings (worst {multi.worst}; {said})"
    print(f"report: verdict {said}; {len(schemes)} scheme(s) -> {Path(args.out).resolve()}")


def _examples(table: pd.DataFrame, pixels_path: str, spec: BiasSpec) -> bytes | None:
    """A few images as the model sees them: the image and, with S=1, the noise channel."""
    pick = table.groupby(["label", "s"] if "s" in table else ["label"]).head(1).head(6)
    pixels = artifacts.read_pixels(pixels_path, n_rows=len(table))
    s = pick["s"].to_numpy() if "s" in pick else None
    x = model_inputs(pixels, pick["row"].to_numpy(), s, spec)
    panels = np.concatenate(list(x.transpose(1, 0, 2, 3)), axis=-1)  # image | bias channel
    titles = [f"y={r.label}" + (f" S={r.s}" if s is not None else "") for r in pick.itertuples()]
    return examples_figure(panels, titles)


def _ranks(seeds_csv: str | None, figure: str, evaluate):
    """The rank test of the (scheme, method) pairs over the training seeds, or why none."""
    if not seeds_csv:
        return None
    if figure in ReportConfig.figures()[1]:  # a gap: the first attribute's, as the trade-off's
        figure = f"{evaluate.groups[0]}.{figure}"
    seeds = pd.read_csv(seeds_csv)
    if "finding" in seeds.columns:  # a multi-label run: the "any finding" classifier's figures
        seeds = seeds[seeds["finding"] == ANY]
    try:
        return rank_methods(seeds, figure, blocks=["seed"], level=1 - evaluate.level)
    except ValueError as exc:  # one seed, or one method: nothing to rank
        return str(exc)


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


if __name__ == "__main__":
    run(main, "report")
