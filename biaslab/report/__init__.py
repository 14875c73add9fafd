"""One self-contained HTML page: the verdict first, then the figures, the tables, what the model
looks at (when the explain stage ran), the training curves and the data audit.

Figures are PNGs embedded as data URIs, so the page can be mailed or archived as a single file.
The page is rendered by jinja2 from ``templates/report.html.j2`` with autoescaping: no value of
the run (a group name, a warning) can inject markup.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from biaslab.data.group_keys import IMAGES, PATIENTS, UNITS
from biaslab.fairness.ranks import RankTest, sentence, table_of
from biaslab.fairness.recommend import why_recommended
from biaslab.fairness.verdict import flag, top_pair
from biaslab.report import figures, tables
from biaslab.report.cd_diagram import cd_diagram
from biaslab.report.figures import curves_figure, examples_figure

__all__ = ["ExplainFigure", "ExplainTable", "build_report", "curves_figure", "examples_figure",
           "missing_figures", "render"]

GAPS = ("disparate_impact", "base_disparate_impact", "excess_disparate_impact",
        "statistical_parity_difference", "equal_opportunity_difference",
        "equalized_odds_difference", "worst_group_balanced_accuracy", "auc_gap")
LONG = 12  # a table with more rows than this is folded away (<details>)
# the sections a report may say are absent, and why (build_report's ``absent``)
ABSENT_SECTIONS = ("flip", "explain", "training", "examples", "sweep")


@dataclass(frozen=True)
class ExplainFigure:
    """A figure of the "What the model looks at" section: PNG bytes, a title, a caption."""

    title: str
    png: bytes
    caption: str = ""


@dataclass(frozen=True)
class ExplainTable:
    """A small table of the "What the model looks at" section."""

    title: str
    frame: pd.DataFrame
    caption: str = ""


def data_uri(png: bytes | None) -> str | None:
    """``data:image/png;base64,...`` of a PNG, or None."""
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()


def missing_figures(grid: pd.DataFrame) -> list[str]:
    """The figures left empty for too few cases, one line per reason (test group sizes do not
    depend on the method, so a reason usually holds for every pair: said once)."""
    pairs: dict[str, list[str]] = {}
    for _, row in grid.iterrows():
        for col in (c for c in grid.columns if c.endswith("insufficient")):
            if isinstance(row[col], str) and row[col]:
                pairs.setdefault(f"{col}: {row[col]}", []).append(
                    f"{row['scheme']} / {row['method']}")
    return [f"{'every model' if len(who) == len(grid) else ', '.join(who)}: {text}"
            for text, who in pairs.items()]


def build_report(
    *, grid: pd.DataFrame, per_group: pd.DataFrame, audit: dict, prevalence: pd.DataFrame,
    groups: list[str], curves: pd.DataFrame | None = None, verdict: pd.DataFrame | None = None,
    summary: pd.DataFrame | None = None, warnings: pd.DataFrame | None = None,
    scores: pd.DataFrame | None = None, counts: pd.DataFrame | None = None,
    gap: str | None = None, examples: bytes | None = None,
    explain: Sequence[ExplainFigure | ExplainTable] = (), bias: str = "noise_channel",
    sweep: str | None = None, unit: str = UNITS, resample: str = "auto",
    max_accuracy_loss: float | None = None,
    absent: Mapping[str, str] | None = None, origin: str | None = None,
    ranks: RankTest | str | None = None,
    compare: Mapping | None = None,
    findings: Sequence[ExplainFigure | ExplainTable] = (),
) -> str:
    """The report page, from evaluate's, train's and the audit's outputs and the verdict.

    Parameters
    ----------
    grid, per_group : DataFrame
        ``metrics/grid.csv`` and ``metrics/groups.csv``.
    audit : dict
        ``metrics/audit.json``.
    prevalence : DataFrame
        ``metrics/audit/prevalence.csv``.
    groups : list of str
        The attributes compared (``evaluate.groups``): one set of per-group figures each.
    curves : DataFrame, optional
        Training curves: ``scheme``, optional ``seed``, ``epoch``, losses, ``val_bacc``.
    verdict, summary, warnings : DataFrame, optional
        :func:`biaslab.fairness.verdict.judge`, :func:`~biaslab.fairness.verdict.summarise` and
        :func:`~biaslab.fairness.verdict.model_warnings`; without them the page says there is no
        verdict.
    scores, counts : DataFrame, optional
        :func:`biaslab.report.data.test_scores` and :func:`~biaslab.report.data.decision_counts`:
        the ROC, calibration and confusion figures (absent without them).
    gap : str, optional
        The grid column traded against balanced accuracy (``s.disparate_impact``).
    examples : bytes, optional
        A PNG of a few images as the model sees them.
    explain : sequence of ExplainFigure and ExplainTable
        The "What the model looks at" section; empty: no section.
    bias : str
        ``bias.kind``: with ``none`` the page says nothing of an injected bias.
    sweep : str, optional
        Link to the sweep's figure, relative to the page (None: how to make one).
    unit : {"patients", "images", "units"}
        What ``per_group``'s ``patients`` column counts, in words
        (:func:`biaslab.data.group_keys.unit_word` of the index): the page says patients only
        when the index has patient ids. The verdict's and warnings' sizes are said with the
        ``unit`` they were made with (:func:`~biaslab.fairness.verdict.judge`).
    resample : {"auto", "patient", "image"}
        ``evaluate.resample``: what the bootstrap intervals resampled (auto: the units).
    max_accuracy_loss : float, optional
        ``evaluate.max_accuracy_loss``: with ``gap``, the page says in one sentence why the
        recommended pair was chosen over the baseline
        (:func:`biaslab.fairness.recommend.why_recommended`); None: it does not.
    absent : mapping of str to str, optional
        Section -> the one line said in its place, for a report on what the pipeline did not
        make (``biaslab audit``: no images, no training): keys of :data:`ABSENT_SECTIONS`
        (``flip`` replaces the sentence on the injected bias).
    origin : str, optional
        The page's last line, what it was made from (None: the pipeline's artifacts).
    ranks : RankTest or str, optional
        :func:`biaslab.fairness.ranks.rank_methods` over the training seeds: the section "Does
        any method beat plain training?"; a str: why there is no test (one seed); None: no
        section.
    compare : mapping, optional
        The section "A against B" (``biaslab audit --compare``): ``a``, ``b``, ``level``,
        ``methods`` (:func:`biaslab.audit.compare_words.sentences`) and ``table`` (compare.csv).
    findings : sequence of ExplainFigure and ExplainTable
        A multi-label run's "Findings" section (:mod:`biaslab.report.findings`); empty: none.
    """
    absent = dict(absent or {})
    unknown = sorted(set(absent) - set(ABSENT_SECTIONS))
    if unknown:
        raise ValueError(f"build_report: absent names unknown section(s) {unknown}; expected "
                         f"some of {', '.join(ABSENT_SECTIONS)}")
    sized = _units_column(per_group, unit)
    context = {
        "has_bias": bias != "none" and "flip_rate" in grid.columns,
        "bias": bias, "groups": groups, "seeds": _seeds(grid),
        "resampled": _resampled(unit, resample),
        "verdict": _verdict_context(verdict, summary, warnings, grid),
        "why": why_recommended(grid, gap, max_accuracy_loss)
        if gap and max_accuracy_loss is not None and "val.fairness_cost" in grid else "",
        "headline": _headline(grid, per_group, groups, unit),
        "notes": missing_figures(grid),
        "tradeoff": data_uri(figures.tradeoff_figure(grid, gap)) if gap else None, "gap": gap,
        "per_group": _per_group(scores, counts, groups, grid),
        "groups_table": tables.frame(
            sized, [c for c in ("scheme", "method", "set", "group", "n", PATIENTS, UNITS,
                                "positives", "negatives") if c in sized.columns],
            ["accuracy", "balanced_accuracy", "tpr", "fpr", "selection_rate", "auc",
             "calibration_error", "flip_rate"]),
        "explain": [_explain_item(item) for item in explain],
        "findings": [_explain_item(item) for item in findings],
        "curves": data_uri(curves_figure(curves)) if curves is not None else None,
        "audit": _audit(audit, prevalence),
        "examples": data_uri(examples), "sweep": sweep, "long": LONG,
        "absent": {k: absent.get(k) for k in ABSENT_SECTIONS}, "origin": origin,
        "ranks": _ranks(ranks),
        "compare": None if compare is None else {**compare, "table": tables.frame(
            compare["table"], ["method", "figure", "fairer"],
            ["A", "B", "difference", "p", "p_adj", "tells"])},
    }
    return render("report.html.j2", **context)


def render(template: str, **context) -> str:
    """``template`` (of this package's templates/) rendered with autoescaping."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("biaslab.report", "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(template).render(**context)


def _ranks(ranks: RankTest | str | None) -> dict | None:
    if ranks is None or isinstance(ranks, str):
        return ranks and {"why_not": ranks}
    rows = table_of(ranks).rename(columns={"difference": "difference from " + str(ranks.control),
                                           "p_holm": "p (Holm)"})
    return {"sentence": sentence(ranks), "diagram": data_uri(cd_diagram(ranks)),
            "table": tables.frame(rows, ["method", "outcome"],
                                  [c for c in rows.columns if c not in ("method", "outcome")]),
            "figure": ranks.figure, "why_not": None}


def _resampled(unit: str, resample: str) -> str:
    """What the bootstrap drew, for the figures' note: images, or the units with all their
    images (``evaluate.resample``: image draws images whatever the units)."""
    if resample == "image" or unit == IMAGES:
        return IMAGES
    if unit == PATIENTS:
        return "whole patients (each with all its images)"
    return "units (a patient with all its images, or an image without a patient id)"


def _units_column(per_group: pd.DataFrame, unit: str) -> pd.DataFrame:
    """``per_group`` with its ``patients`` column named for what it counts: dropped when the
    units are the images (it repeats ``n``), ``units`` when only some images have a patient."""
    if PATIENTS not in per_group.columns or unit == PATIENTS:
        return per_group
    if unit == IMAGES:
        return per_group.drop(columns=PATIENTS)
    return per_group.rename(columns={PATIENTS: UNITS})


def _seeds(grid: pd.DataFrame) -> int:
    """How many training seeds the grid's figures average (its ``seeds``: "0 1 2")."""
    if "seeds" not in grid.columns:
        return 1
    return max([len(str(v).split()) for v in grid["seeds"].dropna()] or [1])


def _verdict_context(verdict, summary, warnings, grid) -> dict:
    if verdict is None or summary is None or summary.empty:
        return {"top": None, "warnings": _warning_lines(warnings)}
    top, chosen, mine = top_pair(verdict, summary)
    return {
        "top": top.to_dict(), "chosen": chosen, "table": tables.verdict_table(mine),
        "summary": tables.summary_table(summary),
        "all": tables.verdict_table(verdict, pairs=True),
        "warnings": _warning_lines(warnings),
    }


def _warning_lines(warnings: pd.DataFrame | None) -> list[dict]:
    if warnings is None:
        return []
    return [{"who": f"{r.scheme} / {r.method}" if r.scheme else "every model",
             "kind": r.kind, "message": r.message} for r in warnings.itertuples()]


def _headline(grid: pd.DataFrame, per_group: pd.DataFrame, groups: list[str],
              unit: str) -> tables.Table:
    gap_cols = [f"{a}.{m}" for a in groups for m in GAPS]
    shifted = ["shifted.accuracy", "shifted.balanced_accuracy"]
    metrics = [m for m in ("accuracy", "balanced_accuracy", "auc", "flip_rate", *shifted,
                           *gap_cols, "fairness_cost", "val.balanced_accuracy",
                           "val.fairness_cost", "pareto", "recommended")
               if m in grid.columns and grid[m].notna().any()]
    return tables.headline(grid, metrics, tables.group_sizes(per_group, unit))


def _per_group(scores, counts, groups: list[str], grid: pd.DataFrame) -> list[dict]:
    """For each attribute: ROC and calibration (with scores), the recommended pair's confusion
    matrices (or the first pair's) and every pair's counts."""
    if counts is None or counts.empty:
        return []
    recommended = grid.loc[flag(grid, "recommended"), ["scheme", "method"]]
    scheme, method = (recommended.iloc[0] if not recommended.empty
                      else counts[["scheme", "method"]].iloc[0])
    mine = counts[(counts["scheme"] == scheme) & (counts["method"] == method)]
    present = set(scores.columns) if scores is not None else set(counts["attribute"])
    return [{
        "attribute": attribute,
        "roc": data_uri(figures.roc_figure(scores, counts, attribute))
        if scores is not None else None,
        "calibration": data_uri(figures.calibration_figure(scores, attribute))
        if scores is not None else None,
        "confusion": data_uri(figures.confusion_figure(mine, attribute)),
        "confusion_all": tables.confusion(counts, attribute),
        "pair": f"{scheme} / {method}" + ("" if not recommended.empty else " (none recommended)"),
    } for attribute in groups if attribute in present]


def _explain_item(item: ExplainFigure | ExplainTable) -> dict:
    if isinstance(item, ExplainFigure):
        return {"kind": "figure", "title": item.title, "caption": item.caption,
                "src": data_uri(item.png)}
    if isinstance(item, ExplainTable):
        return {"kind": "table", "title": item.title, "caption": item.caption,
                "table": tables.plain(item.frame)}
    raise TypeError(f"explain: expected ExplainFigure or ExplainTable items, got "
                    f"{type(item).__name__}")


def _audit(audit: dict, prevalence: pd.DataFrame) -> dict:
    rows = prevalence[prevalence["split"].isin(["all", "train", "val", "test"])]
    # intersections (a&b) only over the whole data: per split they would swamp the table
    rows = rows[(rows["split"] == "all") | ~rows["attribute"].astype(str).str.contains(
        "&", regex=False)]
    return {
        "n": audit.get("n"), "prevalence": audit.get("prevalence"),
        "splits": audit.get("splits", {}), "warnings": audit.get("warnings", []),
        "imbalance": audit.get("imbalance") or {}, "balance": audit.get("balance") or {},
        "simpson": tables.plain(pd.DataFrame(audit["simpson"])) if audit.get("simpson")
        else None,
        "rejected": {"n": (audit.get("rejected") or {}).get("n", 0),
                     "duplicates": (audit.get("rejected") or {}).get("duplicates", 0)},
        "table": tables.frame(rows, ["split", "attribute", "group", "n"], ["prevalence"]),
    }
