"""The audit of a checked predictions table: what the pipeline's postprocess, evaluate and report
stages do after ``predict``, on the user's models.

Each model is a pipeline model: its recipe plays the part of a scheme (the grid's ``scheme``
column), each of its models that of a training seed. For every model the threshold methods are
fitted on its validation rows and applied to its val and test rows
(:func:`biaslab.fairness.thresholds.decide_methods`, as ``postprocess``); a method the rows
cannot support is a grid row saying why, as in the pipeline. Without validation rows only
``fixed`` applies (it fits nothing); with decisions only, the one method is ``given``, the
model's own decisions, and every threshold method is not applicable. The decisions are then
evaluated by :func:`biaslab.fairness.evaluate.evaluate_seeds` (as ``evaluate``: intervals,
p-values, the seeds' variance, the pair recommended on validation), judged by
:mod:`biaslab.fairness.verdict` and rendered by :func:`biaslab.report.build_report` (as
``report``), with the sections that need images or an injected bias absent and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from biaslab.audit import compare as paired
from biaslab.audit.compare_words import sentences
from biaslab.audit.table import Predictions
from biaslab.data.audit import run_audit
from biaslab.data.group_keys import unit_word
from biaslab.fairness.costs import DEFAULT_GAP
from biaslab.fairness.evaluate import evaluate_seeds
from biaslab.fairness.flags import add_not_applicable, seed_thresholds
from biaslab.fairness.headline import grid_warnings, headline, summary_line
from biaslab.fairness.recommend import choose
from biaslab.fairness.thresholds import decide_methods, not_applicable
from biaslab.fairness.verdict import Criterion, judge, metric, model_warnings, summarise
from biaslab.report import build_report, data

GIVEN = "given"  # the method of a model's own hard decisions
ABSENT = {
    "flip": "No flip test: it forces an injected bias S on the images, and this audit was given "
            "predictions, not images.",
    "explain": "No maps: what a model looks at needs its images and the model itself; this "
               "audit was given its predictions only.",
    "training": "No training curves: biaslab audited this model from its predictions and did "
                "not train it.",
    "examples": "No examples: this audit was given predictions, not images.",
    "sweep": "No sweep: a sweep retrains the pipeline's models; this audit judges models "
             "trained elsewhere.",
}


@dataclass(frozen=True)
class Audit:
    """What :func:`audit_predictions` computes, in the pipeline's shapes.

    ``grid``, ``per_group``, ``per_seed``: evaluate's grid.csv, groups.csv and seeds.csv;
    ``fairness``: metrics/fairness.json (:func:`biaslab.fairness.headline.headline`);
    ``verdict``: metrics/verdict.json (:func:`biaslab.fairness.verdict.metric`);
    ``thresholds``: recipe -> model -> method -> fitted params or ``{"not_applicable":
    REASON}``; ``report``: the HTML page; ``warnings``: lines to say (methods not applicable,
    degenerate models, missing gaps); ``summary``: the evaluation's one line;
    ``comparison``: with ``compare``, :func:`biaslab.audit.compare.correct_together`'s table
    (compare.csv), else None.
    """

    grid: pd.DataFrame
    per_group: pd.DataFrame
    per_seed: pd.DataFrame
    fairness: dict
    verdict: dict
    thresholds: dict
    report: str
    warnings: list[str]
    summary: str
    comparison: pd.DataFrame | None = None


def decide(predictions: Predictions, methods: Sequence[str], groups: Sequence[str], *,
           fixed_threshold: float = 0.5, tolerance: float = 0.0, seed: int = 0,
           no_val: str = "no validation rows") -> tuple[dict, dict]:
    """Each model's decisions on its val and test rows, and what each method fitted.

    Returns recipe -> model -> postprocess's decisions table (``row``, ``split``, ``method``,
    ``threshold``, ``score``, ``decision``), and recipe -> model -> method -> params (or
    ``{"not_applicable": REASON}``). ``no_val`` is the reason a method needing a fit is not
    applicable when a model has no validation rows.
    """
    rows = predictions.attributes
    decisions: dict = {}
    fitted: dict = {}
    for recipe, models in predictions.recipes.items():
        for model, part in models.items():
            part = part.merge(rows.drop(columns="split"), on="row", how="left")
            if predictions.kind == "decision":
                table, params = _given(part, methods)
            else:
                val, test = part[part["split"] == "val"], part[part["split"] == "test"]
                # without val rows only fixed, which fits nothing, can decide
                fit = list(methods) if len(val) else [m for m in methods if m == "fixed"]
                if not fit:
                    raise ValueError(f"{predictions.source}: model {model!r}: {no_val}, so no "
                                     f"method of {list(methods)} can be fitted; add fixed "
                                     "(--methods, postprocess.methods), which needs none")
                table, params = decide_methods(
                    fit, val, test, list(groups), fixed_threshold=fixed_threshold,
                    tolerance=tolerance, seed=seed)
                params = {m: params.get(m, {"not_applicable": no_val}) for m in methods}
            decisions.setdefault(recipe, {})[model] = table
            fitted.setdefault(recipe, {})[model] = params
    return decisions, fitted


def decide_section(predictions: Predictions, postprocess: Mapping, *,
                   no_val: str = "no validation rows") -> tuple[dict, dict]:
    """:func:`decide` with the ``postprocess`` section's keys (``methods``, ``groups``,
    ``fixed_threshold``, ``tolerance``, ``seed``)."""
    return decide(predictions, postprocess["methods"], postprocess["groups"],
                  fixed_threshold=postprocess.get("fixed_threshold", 0.5),
                  tolerance=postprocess.get("tolerance", 0.0),
                  seed=postprocess.get("seed", 0), no_val=no_val)


def _given(part: pd.DataFrame, methods: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """A model's own hard decisions, as postprocess's table of one method, ``given``."""
    table = pd.DataFrame({"row": part["row"].to_numpy(), "split": part["split"].to_numpy(),
                          "method": GIVEN, "decision": part["decision"].to_numpy()})
    why = "only hard decisions were given (--decision): no score to fit a threshold on"
    return table, {GIVEN: {"decisions": "the model's own"}} | {
        m: {"not_applicable": why} for m in methods}


def evaluate(predictions: Predictions, decisions: dict, fitted: dict, groups: Sequence[str], *,
             max_accuracy_loss: float = 0.02, **options):
    """evaluate's grid of the decisions, as the stage makes it: evaluated per model and
    combined over each recipe's models (:func:`biaslab.fairness.evaluate.evaluate_seeds`,
    ``options`` are its keywords), a row for each method not applicable, and the pair
    recommended on validation."""
    attributes = predictions.attributes.drop(columns="split")
    evaluation = evaluate_seeds(decisions, attributes, list(groups),
                                max_accuracy_loss=max_accuracy_loss, **options)
    grid = add_not_applicable(evaluation.grid, seed_thresholds(fitted))
    return evaluation, choose(grid, max_accuracy_loss)


def audit_predictions(
    predictions: Predictions, *, postprocess: Mapping, evaluate_options: Mapping,
    criteria: Sequence[Criterion], min_group_size: int = 30, min_class_size: int = 10,
    data_audit: Mapping | None = None, no_val: str = "no validation rows",
    compare: Sequence[str] | None = None,
    explain: Sequence = (), absent: Mapping[str, str] | None = None,
) -> Audit:
    """The whole audit: decisions, evaluation, verdict and report.

    Parameters
    ----------
    predictions : Predictions
        :func:`biaslab.audit.table.check_predictions`'s result.
    postprocess : mapping
        ``methods``, ``groups`` (the per-group methods' attributes), ``fixed_threshold``,
        ``tolerance``, ``seed``: the ``postprocess`` section's keys.
    evaluate_options : mapping
        The ``evaluate`` section's keys (``groups``, ``n_boot``, ``n_perm``, ...).
    criteria : sequence of Criterion
        ``report.criteria``.
    min_group_size, min_class_size : int
        ``report.min_group_size`` and ``report.min_class_size``: the small-group warnings.
    data_audit : mapping, optional
        :func:`biaslab.data.audit.run_audit`'s keywords (``min_group_size``, ``level``,
        ``min_effect``), for the report's data audit of the table's images.
    no_val : str
        Why a method needing a fit is not applicable when there are no validation rows.
    compare : (A, B), optional
        Two recipes (or models) compared, paired (:mod:`biaslab.audit.compare`): their
        p-values are corrected with the grid's, and the report says which is fairer.
    explain : sequence of ExplainFigure and ExplainTable
        What the model looks at (:func:`biaslab.audit.looks.look`, for a model file); empty:
        the section says why there is none.
    absent : mapping of str to str, optional
        Lines that replace :data:`ABSENT`'s (a model file: the images are there).
    """
    options = dict(evaluate_options)
    groups = list(options.pop("groups"))
    if compare:  # a bad pair stops the audit before any work
        paired.pair_models(predictions, *compare)
    decisions, fitted = decide_section(predictions, postprocess, no_val=no_val)
    evaluation, grid = evaluate(predictions, decisions, fitted, groups, **options)
    comparison = None
    if compare:
        keys = ("n_boot", "n_perm", "level", "seed", "resample", "intersect", "bins")
        comparison = paired.compare_models(predictions, decisions, evaluation.per_seed, grid,
                                           *compare, groups,
                                           **{k: options[k] for k in keys if k in options})
        grid, comparison = paired.correct_together(
            grid, comparison, correction=options.get("correction", "holm"),
            level=options.get("level", 0.95))
    verdict, page = judge_and_report(
        predictions, decisions, grid, evaluation.per_group, groups, criteria=criteria,
        min_group_size=min_group_size, min_class_size=min_class_size, options=options,
        data_audit=data_audit, explain=explain, absent=absent,
        compare=None if comparison is None else {
            "a": compare[0], "b": compare[1], "level": options.get("level", 0.95),
            "methods": sentences(comparison, level=options.get("level", 0.95)),
            "table": comparison})
    gap = gap_of(groups, options)
    return Audit(grid=grid, per_group=evaluation.per_group, per_seed=evaluation.per_seed,
                 fairness=headline(grid, groups), verdict=verdict, thresholds=fitted,
                 report=page, warnings=evaluation_warnings(fitted, grid, gap),
                 summary=summary_line(grid, gap), comparison=comparison)


def gap_of(groups: Sequence[str], options: Mapping) -> str:
    """The traded gap, ``ATTRIBUTE.GAP``: ``evaluate.pareto_gap`` of the first attribute."""
    return f"{groups[0]}.{options.get('pareto_gap', DEFAULT_GAP)}"


def evaluation_warnings(fitted: dict, grid: pd.DataFrame, gap: str) -> list[str]:
    """The lines an evaluation says: each method not applicable to a model, and why, then
    :func:`biaslab.fairness.headline.grid_warnings`."""
    lines = [f"{recipe}/{model}: {method} not applicable: {why}"
             for recipe, models in fitted.items() for model, params in models.items()
             for method, why in not_applicable(params).items()]
    return lines + grid_warnings(grid, gap)


def judge_and_report(predictions: Predictions, decisions: dict, grid: pd.DataFrame,
                     per_group: pd.DataFrame, groups: Sequence[str], *,
                     criteria: Sequence[Criterion], min_group_size: int = 30,
                     min_class_size: int = 10, options: Mapping | None = None,
                     data_audit: Mapping | None = None, compare: Mapping | None = None,
                     explain: Sequence = (),
                     absent: Mapping[str, str] | None = None) -> tuple[dict, str]:
    """The verdict of ``report.criteria`` on evaluate's grid, and the report page: what the
    pipeline's ``report`` stage does. ``options`` are the evaluate section's keys but
    ``groups`` (``pareto_gap``, ``resample``, ``max_accuracy_loss``); ``compare``, ``explain``
    and ``absent``: the report's comparison section, maps, and lines that replace
    :data:`ABSENT`'s (:func:`audit_predictions`). Returns metrics/verdict.json
    (:func:`biaslab.fairness.verdict.metric`) and the HTML page."""
    options = dict(options or {})
    groups = list(groups)
    gap = gap_of(groups, options)
    unit = unit_word(predictions.attributes)
    verdict = judge(grid, per_group, criteria, unit=unit)
    summary = summarise(verdict, grid)
    page = _report(predictions, decisions, grid, per_group, groups, gap=gap,
                   unit=unit, verdict=verdict, summary=summary,
                   warnings=model_warnings(grid, per_group, min_group_size=min_group_size,
                                           min_class_size=min_class_size, unit=unit, gap=gap),
                   max_accuracy_loss=options.get("max_accuracy_loss", 0.02),
                   resample=options.get("resample", "auto"), data_audit=data_audit or {},
                   compare=compare, explain=list(explain),
                   absent={**ABSENT, **(absent or {})})
    return metric(verdict, summary), page


def _report(predictions: Predictions, decisions: dict, grid: pd.DataFrame,
            per_group: pd.DataFrame, groups: list[str], *, data_audit: Mapping,
            explain: list, absent: dict, **context) -> str:
    """The report page: the pipeline's, with what needs images absent and why."""
    rows = predictions.attributes
    attributes = [g for g in groups if g in rows.columns]
    # the figures show each recipe's first model, as the pipeline's show its first seed
    first = {recipe: next(iter(models.values())) for recipe, models in decisions.items()}
    scores = None
    if predictions.kind == "score":
        scores = data.test_scores({r: next(iter(m.values())) for r, m in
                                   predictions.recipes.items()}, rows, attributes)
    counts = data.decision_counts(first, rows, attributes)
    summary, tables = run_audit(rows, attributes, **data_audit)
    return build_report(grid=grid, per_group=per_group, audit=summary,
                        prevalence=tables["prevalence"], groups=groups, scores=scores,
                        counts=counts, bias="none", explain=explain,
                        absent={k: v for k, v in absent.items()
                                if not (explain and k == "explain")},
                        origin=f"Made by biaslab audit from {predictions.source}.", **context)
