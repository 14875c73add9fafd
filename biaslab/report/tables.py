"""The report's tables as plain data for the template: columns, and rows of :class:`Cell`.

Numbers are formatted here (3 decimals, interval in brackets, the spread over training seeds);
escaping is the template's (jinja2 autoescape), so no cell holds HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from biaslab.fairness.verdict import sizes_text, test_groups


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, a second line (an interval, group sizes), a CSS class."""

    text: str
    note: str = ""
    css: str = ""


@dataclass(frozen=True)
class Table:
    """``columns`` and ``rows`` of cells; ``numeric`` marks right-aligned columns."""

    columns: list[str]
    rows: list[list[Cell]]
    numeric: list[bool] = field(default_factory=list)
    headings: dict[int, str] = field(default_factory=dict)  # row index: a line spanning the row

    def __len__(self) -> int:
        return len(self.rows)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float | np.floating) and np.isnan(value))


def number(value, lo=None, hi=None, sd=None, digits: int = 3) -> Cell:
    """``0.970`` with ``[0.903, 1.000]`` (and ``sd 0.012 over seeds``) below; n/a if missing."""
    if _missing(value):
        return Cell("n/a", css="na")
    if isinstance(value, bool | np.bool_):
        return Cell("yes" if value else "no")
    if isinstance(value, str):
        return Cell(value)
    text = f"{value:.{digits}f}"
    notes = []
    if not (_missing(lo) or _missing(hi)):
        notes.append(f"[{lo:.{digits}f}, {hi:.{digits}f}]")
    if not _missing(sd):
        notes.append(f"sd {sd:.{digits}f} over seeds")
    return Cell(text, " ".join(notes))


def _get(row: pd.Series, key: str):
    value = row.get(key)
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def figure_cell(row: pd.Series, metric: str) -> Cell:
    """``metric`` of a grid or groups row, with its interval and seed spread when present."""
    value = _get(row, metric)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    return number(value, _get(row, f"{metric}_lo"), _get(row, f"{metric}_hi"),
                  _get(row, f"{metric}_seed_sd"))


def headline(grid: pd.DataFrame, metrics: list[str], sizes: dict[str, str]) -> Table:
    """Metrics as rows, one column per (scheme, method): stays readable as schemes are added.
    ``sizes``: attribute -> its test groups' sizes, said in a line above its first gap."""
    pairs = [f"{s} / {m}" for s, m in zip(grid["scheme"], grid["method"], strict=True)]
    rows, headings, said = [], {}, set()
    for metric in metrics:
        attribute = metric.rpartition(".")[0]
        if attribute in sizes and attribute not in said:
            said.add(attribute)
            headings[len(rows)] = f"gaps between the groups of {attribute}: {sizes[attribute]}"
        rows.append([Cell(metric, css="name"),
                     *[figure_cell(r, metric) for _, r in grid.iterrows()]])
    return Table(["figure", *pairs], rows, [False] + [True] * len(pairs), headings)


def frame(df: pd.DataFrame, keys: list[str], metrics: list[str]) -> Table:
    """``keys`` as text, then each of ``metrics`` with its interval."""
    metrics = [m for m in metrics if m in df.columns]
    rows = [[Cell("" if _missing(r[k]) else str(r[k])) for k in keys]
            + [figure_cell(r, m) for m in metrics] for _, r in df.iterrows()]
    return Table([*keys, *metrics], rows, [False] * len(keys) + [True] * len(metrics))


def plain(df: pd.DataFrame) -> Table:
    """Every column as it is (numbers to 3 decimals)."""
    rows = [[number(v) if isinstance(v, float | np.floating) else Cell(
        "" if _missing(v) else str(v)) for v in r] for r in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    return Table([str(c) for c in df.columns], rows, numeric)


STATUS_CSS = {"passed": "pass", "failed": "fail", "not enough data": "unsure",
              "not measured": "na"}


def verdict_table(verdict: pd.DataFrame, pairs: bool = False) -> Table:
    """The criteria, one row each: status, figure, bounds, value [interval], adjusted p, why,
    and the group sizes behind the figure. With ``pairs``, the (scheme, method) first."""
    columns = (["scheme", "method"] if pairs else []) + [
        "status", "criterion", "bounds", "value", "adjusted p", "why", "groups behind it"]
    rows = []
    for r in verdict.itertuples():
        cells = [Cell(r.scheme), Cell(r.method)] if pairs else []
        cells += [Cell(r.status, css=STATUS_CSS.get(r.status, "") + " nowrap"),
                  Cell(r.criterion, "" if r.criterion == r.figure else r.figure),
                  Cell(r.bounds, css="nowrap"), number(r.value, r.lo, r.hi, r.seed_sd),
                  number(r.p_adj), Cell(r.reason), Cell(r.groups, css="sizes")]
        rows.append(cells)
    numeric = [False] * (2 if pairs else 0) + [False, False, False, True, True, False, False]
    return Table(columns, rows, numeric)


def summary_table(summary: pd.DataFrame) -> Table:
    """One row per (scheme, method): its verdict and the count of each status."""
    rows = [[Cell(r.scheme), Cell(r.method), Cell("yes" if r.recommended else ""),
             Cell(r.verdict, css=STATUS_CSS.get(r.verdict, "")), Cell(str(r.passed)),
             Cell(str(r.failed)), Cell(str(r.not_enough_data)), Cell(r.reason)]
            for r in summary.itertuples()]
    return Table(["scheme", "method", "recommended", "verdict", "passed", "failed",
                  "not enough data", "why"], rows,
                 [False, False, False, False, True, True, True, False])


def group_sizes(per_group: pd.DataFrame, unit: str) -> dict[str, str]:
    """attribute -> the sizes of its test groups (they are the same for every pair), the units
    called ``unit`` (:func:`biaslab.fairness.verdict.sizes_text`)."""
    need = {"set", "attribute", "group", "patients", "positives", "negatives"}
    if not need <= set(per_group.columns):
        return {}
    return {a: sizes_text(part, unit)
            for a, part in test_groups(per_group).groupby("attribute", sort=False)}


def confusion(counts: pd.DataFrame, attribute: str) -> Table:
    """Every (scheme, method)'s confusion counts per group of ``attribute``, with TPR and FPR."""
    part = counts[counts["attribute"] == attribute]
    rows = [[Cell(r.scheme), Cell(r.method), Cell(r.group), *[Cell(str(int(v))) for v in (
        r.tp, r.fn, r.fp, r.tn)], number(r.tpr), number(r.fpr)] for r in part.itertuples()]
    return Table(["scheme", "method", "group", "TP", "FN", "FP", "TN", "TPR", "FPR"], rows,
                 [False] * 3 + [True] * 6)
