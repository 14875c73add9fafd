"""The report of a multi-label run: a finding x group heatmap of a gap, the verdict per finding
and overall (the worst finding named), and the underdiagnosis rates with their intervals.

Evaluate's grid.csv and groups.csv of a multi-label run carry a ``finding`` column
(:mod:`biaslab.fairness.findings`), with one row per (scheme, method) of every finding and of
the "any finding" classifier. Each finding is judged as a single-label run on its own rows
(:func:`biaslab.fairness.verdict.judge`); the underdiagnosis criterion
(``underdiagnosis_gap``) only on the "any finding" rows.

The heatmap shows per finding the TPR disparities that CheXclusion (Seyyed-Kalantari, Liu,
McDermott, Chen and Ghassemi 2021, "CheXclusion: Fairness gaps in deep chest X-ray
classifiers", Pacific Symposium on Biocomputing 26, 232-243) reports: a cell is a group's rate
(TPR for the equal-opportunity difference) minus the finding's rate over the whole test set, of
the pair recommended for that finding, averaged over the training seeds. A cell is marked
when its attribute's gap for that finding (grid.csv's ``ATTR.GAP``) is significant: its
adjusted p-value (corrected over every finding together) is at most alpha and, for a signed
difference, its interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from biaslab.fairness.across_seeds import combine
from biaslab.fairness.finding_rows import ANY, worst_finding
from biaslab.fairness.recommend import baseline_row
from biaslab.fairness.underdiagnosis import GAP, RATE, rates
from biaslab.fairness.verdict import FAILED, NO_DATA, PASSED, Criterion, judge, summarise
from biaslab.report import ExplainFigure, ExplainTable
from biaslab.report.figures import WIDTH, _pyplot, png

# the gaps a heatmap can show, and the per-group rate each compares
HEATMAP_GAPS = {"equal_opportunity_difference": "tpr", "statistical_parity_difference":
                "selection_rate", "auc_gap": "auc",
                "worst_group_balanced_accuracy": "balanced_accuracy"}
SIGNED = ("equal_opportunity_difference", "statistical_parity_difference")


def rows_of(table: pd.DataFrame, finding: str) -> pd.DataFrame:
    """A finding's rows of grid.csv or groups.csv, as a single-label run's (no ``finding``
    column; the underdiagnosis columns only on the "any finding" rows)."""
    rows = table[table["finding"] == finding].drop(columns="finding").reset_index(drop=True)
    return rows if finding == ANY else rows.drop(columns=[c for c in rows if GAP in c])


def findings(grid: pd.DataFrame) -> list[str]:
    """The grid's findings in its order, "any finding" last."""
    return [f for f in dict.fromkeys(grid["finding"]) if f != ANY] + [ANY]


def judge_findings(grid: pd.DataFrame, per_group: pd.DataFrame,
                   criteria: Sequence[Criterion], *, unit: str
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`~biaslab.fairness.verdict.judge` and :func:`~biaslab.fairness.verdict.summarise`
    of each finding's rows, stacked with ``finding`` first."""
    verdicts, summaries = [], []
    for finding in findings(grid):
        mine = rows_of(grid, finding)
        verdict = judge(mine, rows_of(per_group, finding), criteria, unit=unit)
        verdicts.append(verdict.assign(finding=finding)[["finding", *verdict.columns]])
        summary = summarise(verdict, mine)
        summaries.append(summary.assign(finding=finding)[["finding", *summary.columns]])
    return pd.concat(verdicts, ignore_index=True), pd.concat(summaries, ignore_index=True)


def overall(summary: pd.DataFrame, grid: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Each finding's verdict (of its recommended pair, else its first) and the run's:
    failed when any finding fails, else not enough data when any lacks data, else passed;
    ``worst`` names the failed finding farthest from fairness (grid's ``fairness_cost``, see
    :func:`biaslab.fairness.findings.worst_finding`), or the worst of all when none failed."""
    top = summary.sort_values("recommended", ascending=False, kind="stable").drop_duplicates(
        "finding").set_index("finding").loc[findings(grid)].reset_index()
    statuses = set(top["verdict"])
    verdict = FAILED if FAILED in statuses else NO_DATA if NO_DATA in statuses else PASSED
    failed = top.loc[top["verdict"] == FAILED, "finding"]
    worst = worst_finding(grid[grid["finding"].isin(failed)] if len(failed) else grid)
    if worst is None and len(failed):
        worst = failed.iloc[0]  # the "any finding" row alone failed, or no cost is known
    return (top[["finding", "scheme", "method", "recommended", "verdict", "reason"]],
            {"verdict": verdict, "worst_finding": worst})


def heatmap_table(grid: pd.DataFrame, per_group: pd.DataFrame, gap: str, alpha: float
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The heatmap's values (finding x group: the group's rate minus the finding's overall
    rate, the recommended pair's, mean over the seeds; NaN with too few cases) and its marks
    (the same shape, True where the attribute's ``gap`` is significant, see the module)."""
    if gap not in HEATMAP_GAPS:
        raise ValueError(f"report.findings_gap = {gap!r}; expected one of "
                         f"{', '.join(HEATMAP_GAPS)}")
    rate, values, marks = HEATMAP_GAPS[gap], {}, {}
    for finding in findings(grid)[:-1]:
        pair, test = _pair(grid, per_group, finding)
        whole = test[test["attribute"] == "all"].groupby("seed")[rate].first()
        parts = test[test["attribute"] != "all"]
        diff = parts[rate].to_numpy() - whole.reindex(parts["seed"]).to_numpy()
        values[finding] = pd.Series(diff, index=parts["group"]).groupby(level=0,
                                                                         sort=False).mean()
        marks[finding] = pd.Series({g: _significant(pair, a, gap, alpha) for a, g in
                                    parts[["attribute", "group"]].drop_duplicates().values})
    return pd.DataFrame(values).T, pd.DataFrame(marks).T.fillna(False).astype(bool)


def _significant(pair: pd.Series, attribute: str, gap: str, alpha: float) -> bool:
    column = f"{attribute}.{gap}"
    p = pair.get(f"{column}_p_adj", np.nan)
    if pd.isna(p) or p > alpha:
        return False
    lo, hi = pair.get(f"{column}_lo", np.nan), pair.get(f"{column}_hi", np.nan)
    return gap not in SIGNED or bool(lo > 0 or hi < 0)


def _pair(grid: pd.DataFrame, per_group: pd.DataFrame, finding: str
          ) -> tuple[pd.Series, pd.DataFrame]:
    """The finding's grid row of the pair recommended on validation (else the baseline,
    :func:`biaslab.fairness.recommend.baseline_row`) and that pair's test rows of groups.csv
    (every seed, every group and ``all``)."""
    rows = rows_of(grid, finding)
    picked = rows[rows["recommended"].eq(True)] if "recommended" in rows else rows.iloc[:0]
    pair = (picked if len(picked) else baseline_row(rows)).iloc[0]
    mine = per_group[(per_group["finding"] == finding) & (per_group["set"] == "test")
                     & (per_group["scheme"] == pair["scheme"])
                     & (per_group["method"] == pair["method"])]
    return pair, mine


def _name(pair: pd.Series) -> str:
    return f"{pair['scheme']}/{pair['method']}"


def _over_seeds(table: pd.DataFrame, figure: str, level: float) -> pd.DataFrame:
    """``figure`` with its interval per (attribute, group), combined over the training seeds
    (:func:`biaslab.fairness.across_seeds.combine`: the seeds' variance added)."""
    table = table if "seed" in table else table.assign(seed=0)
    keep = [c for c in ("attribute", "group", "seed", "with_finding", "positives", "negatives")
            if c in table]
    out = combine(table[[*keep, figure, f"{figure}_lo", f"{figure}_hi"]],
                  by=("attribute", "group"), level=level,
                  constant=[c for c in keep if c not in ("attribute", "group", "seed")])
    return out.drop(columns=["seeds", f"{figure}_seed_sd"], errors="ignore")


def underdiagnosis_table(grid: pd.DataFrame, per_group: pd.DataFrame,
                         level: float = 0.95) -> pd.DataFrame:
    """Each test group's underdiagnosis rate (:func:`biaslab.fairness.underdiagnosis.rates`)
    for the "any finding" pair recommended (else the first), over the training seeds:
    attribute, group, images with a finding, rate and interval, pair."""
    pair, mine = _pair(grid, per_group, ANY)
    table = rates(mine[mine["attribute"] != "all"])
    return _over_seeds(table, RATE, level).assign(pair=_name(pair))


def auc_table(grid: pd.DataFrame, per_group: pd.DataFrame, level: float = 0.95
              ) -> pd.DataFrame:
    """Each finding's test AUC per group (its recommended pair; the AUC does not depend on
    the threshold method), over the training seeds, with its interval."""
    parts = []
    for finding in findings(grid)[:-1]:
        pair, mine = _pair(grid, per_group, finding)
        if "auc" in mine:
            parts.append(_over_seeds(mine[mine["attribute"] != "all"], "auc", level).assign(
                finding=finding, pair=_name(pair)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def heatmap_figure(values: pd.DataFrame, marks: pd.DataFrame, gap: str) -> bytes | None:
    """The finding x group heatmap (diverging, centred on 0; n/a cells grey), a star on each
    marked cell."""
    if values.empty:
        return None
    plt = _pyplot()
    data = values.to_numpy(dtype=float)
    # at least +-0.05 on the scale: differences of a few thousandths stay pale
    limit = max(0.05, np.nanmax(np.abs(data)) if np.isfinite(data).any() else 0.0)
    fig, ax = plt.subplots(figsize=(min(WIDTH, 2.5 + 0.8 * data.shape[1]),
                                    1.0 + 0.35 * data.shape[0]))
    cmap = plt.get_cmap("RdBu").copy()
    cmap.set_bad("lightgrey")
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=-limit, vmax=limit,
                      aspect="auto")
    ax.set_xticks(range(data.shape[1]), values.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(data.shape[0]), values.index, fontsize=8)
    marked = marks.reindex(index=values.index, columns=values.columns).fillna(False)
    for (i, j), value in np.ndenumerate(data):
        text = "n/a" if np.isnan(value) else f"{value:+.2f}" + ("*" if marked.iat[i, j] else "")
        ax.text(j, i, text, ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label=f"{HEATMAP_GAPS[gap]} of the group - of all")
    return png(fig)


@dataclass(frozen=True)
class FindingsReport:
    """What the report of a multi-label run adds (:func:`findings_report`): the worst
    finding, whose rows the rest of the page shows (``grid``, ``per_group``, ``verdict``,
    ``summary``), the "Findings" section's ``items``, and ``metric``, the run's verdict for
    metrics/verdict.json (``overall``, ``worst_finding``)."""

    worst: str
    grid: pd.DataFrame
    per_group: pd.DataFrame
    verdict: pd.DataFrame
    summary: pd.DataFrame
    items: list
    metric: dict


def findings_report(grid: pd.DataFrame, per_group: pd.DataFrame,
                    criteria: Sequence[Criterion], *, unit: str, gap: str, alpha: float,
                    level: float = 0.95) -> FindingsReport:
    """Every finding judged, the run's verdict, the heatmap and the underdiagnosis rates."""
    verdict, summary = judge_findings(grid, per_group, criteria, unit=unit)
    top, run = overall(summary, grid)
    worst = run["worst_finding"] or findings(grid)[0]
    values, marks = heatmap_table(grid, per_group, gap, alpha)
    rates_ = underdiagnosis_table(grid, per_group, level)
    rates_[RATE] = _with_interval(rates_, RATE)
    aucs = auc_table(grid, per_group, level)
    items = [
        ExplainTable("Verdict per finding", top, caption=(
            f"Overall: {run['verdict']}" + (f"; worst finding: {worst}" if worst else "")
            + ". Each finding is judged as a run of its own on its recommended pair; the "
            "p-values of every finding are corrected together.")),
        ExplainFigure(f"{gap} per finding and group", heatmap_figure(
            values, marks, gap), caption=(
            f"Each group's {HEATMAP_GAPS[gap]} minus the finding's {HEATMAP_GAPS[gap]} over "
            f"the whole test set (the pair "
            f"recommended for the finding, mean over the seeds); * marks a group whose "
            f"attribute's {gap} has an adjusted p-value <= {alpha:g} and an interval "
            "excluding 0; n/a: too few cases.")),
        ExplainTable("Underdiagnosis", rates_.drop(columns=[f"{RATE}_lo", f"{RATE}_hi"]),
                     caption=(
            "Share of each group's test images with at least one finding that the model calls "
            "'No Finding' (all findings negative), with its interval (Seyyed-Kalantari et al. "
            "2021, Nature Medicine).")),
    ]
    if len(aucs):
        aucs["auc"] = _with_interval(aucs, "auc")
        items.append(ExplainTable("AUC per finding and group", aucs[
            ["finding", "attribute", "group", "positives", "negatives", "auc", "pair"]],
            caption="Each finding's test AUC in each group, with its interval."))
    worst_rows = [rows_of(t, worst) for t in (grid, per_group, verdict, summary)]
    return FindingsReport(worst, *worst_rows, items,
                          {"overall": run["verdict"], "worst_finding": run["worst_finding"]})


def _with_interval(table: pd.DataFrame, figure: str) -> list[str]:
    """``figure`` of each row as text, ``0.312 [0.280, 0.345]`` (n/a when missing)."""
    return ["n/a" if pd.isna(r[figure]) else f"{r[figure]:.3f}" + (
        "" if pd.isna(r[f"{figure}_lo"]) or pd.isna(r[f"{figure}_hi"])
        else f" [{r[f'{figure}_lo']:.3f}, {r[f'{figure}_hi']:.3f}]") for _, r in table.iterrows()]
