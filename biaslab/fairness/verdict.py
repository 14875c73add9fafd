"""The verdict: can we trust this classifier? Explicit criteria judged on evaluate's figures.

Each criterion (``report.criteria``) bounds one figure of ``grid.csv``: a figure of the whole
test set (``flip_rate``) or a gap between the groups of an attribute (``s.disparate_impact``,
one row per attribute). For every (scheme, method) it is

- **passed** when the figure lies within the bounds,
- **failed** when it lies outside them,
- **not enough data** when the figure is missing (too few cases, evaluate.min_cell), or when
  the evidence asked for is lacking: with ``require_interval`` the confidence interval must lie
  wholly within the bounds to pass and wholly outside to fail; with ``alpha`` a gap fails only
  when its adjusted p-value (``ATTR.GAP_p_adj``) is at most alpha,
- **not measured** when the run has no such figure (a flip rate without an injected bias).

Each row carries the number, its interval, the adjusted p-value where it exists and the group
sizes behind it (units, positives, negatives, from ``groups.csv``; ``unit`` says what a unit is:
patients, images or both, :func:`biaslab.data.group_keys.unit_word`). :func:`summarise` gives
one verdict per pair (failed when a criterion fails or the model is degenerate), and
:func:`model_warnings` what to read before the figures: degenerate models, methods that do not
apply, groups too small to say much. Pure: DataFrames in, DataFrames out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from biaslab.data.group_keys import IMAGES, UNITS
from biaslab.fairness.costs import raw_gap_warning

PASSED, FAILED, NO_DATA, NOT_MEASURED = "passed", "failed", "not enough data", "not measured"
STATUSES = (PASSED, FAILED, NO_DATA, NOT_MEASURED)
COLUMNS = ["scheme", "method", "recommended", "criterion", "figure", "attribute", "bounds",
           "value", "lo", "hi", "seed_sd", "p_adj", "status", "reason", "groups",
           "min_patients", "min_positives", "min_negatives"]
SUMMARY = ["scheme", "method", "recommended", "degenerate", "verdict", "passed", "failed",
           "not_enough_data", "not_measured", "reason"]
WARNINGS = ["scheme", "method", "kind", "message"]


@dataclass(frozen=True)
class Criterion:
    """One criterion: ``figure`` within [``min``, ``max``] (see the module's docstring).

    ``abs`` compares |value|; ``attributes`` restricts a gap to these attributes (None: every
    attribute of the grid); ``name`` is the criterion's short name (None: ``ATTR.FIGURE``).
    """

    figure: str
    min: float | None = None
    max: float | None = None
    abs: bool = False
    attributes: Sequence[str] | None = None
    require_interval: bool = False
    alpha: float | None = None
    name: str | None = None

    def __post_init__(self):
        if self.min is None and self.max is None:
            raise ValueError(f"criterion {self.figure}: no bound; give min, max or both")

    def bounds(self) -> str:
        """The bounds as read: ``0.8 <= x <= 1.25``, ``|x| <= 0.1``."""
        x = "|x|" if self.abs else "x"
        if self.min is not None and self.max is not None:
            return f"{self.min:g} <= {x} <= {self.max:g}"
        return f"{x} <= {self.max:g}" if self.max is not None else f"{x} >= {self.min:g}"

    def within(self, value: float) -> bool:
        value = abs(value) if self.abs else value
        return ((self.min is None or value >= self.min)
                and (self.max is None or value <= self.max))


def gap_attributes(grid: pd.DataFrame) -> list[str]:
    """The attributes the grid compares groups of (``s``, ``s&sex``): its ``ATTR.groups``
    columns, those of the shifted test set left out."""
    return [c.removesuffix(".groups") for c in grid.columns
            if c.endswith(".groups") and not c.startswith("shifted.")]


def judge(grid: pd.DataFrame, groups: pd.DataFrame, criteria: Sequence[Criterion], *,
          unit: str = UNITS) -> pd.DataFrame:
    """Every criterion for every (scheme, method) of ``grid``, the recommended pair first.

    Parameters
    ----------
    grid : DataFrame
        ``metrics/grid.csv``: ``scheme``, ``method``, the figures with ``_lo``/``_hi`` (and
        ``_p_adj`` for gaps, ``_seed_sd`` with several training seeds), ``recommended``,
        ``insufficient`` and ``ATTR.insufficient`` (why a figure is missing), ``warning``.
    groups : DataFrame
        ``metrics/groups.csv``: ``scheme``, ``method``, ``set``, ``attribute``, ``group``,
        ``n``, ``patients``, ``positives``, ``negatives`` (an optional ``seed`` column: the
        sizes do not depend on it).
    criteria : sequence of Criterion
    unit : str
        What the ``patients`` column counts, in words: ``patients``, ``images`` or ``units``
        (:func:`biaslab.data.group_keys.unit_word` of the index).

    Returns
    -------
    DataFrame with columns :data:`COLUMNS`, one row per pair x criterion x attribute judged.
    ``status`` is one of :data:`STATUSES`; ``reason`` says why when the status is not plain.
    """
    missing = [c for c in ("scheme", "method") if c not in grid.columns]
    if missing:
        raise ValueError(f"grid: missing column(s) {missing}; found {list(grid.columns)}")
    sizes = _sizes(groups)
    rows = []
    for _, pair in _ordered(grid).iterrows():
        for criterion in criteria:
            attributes = _attributes_of(criterion, grid)
            for attribute in attributes:
                column = f"{attribute}.{criterion.figure}" if attribute else criterion.figure
                # a named criterion over several attributes: one name per attribute
                label = column if criterion.name is None else criterion.name if len(
                    attributes) == 1 else f"{criterion.name}.{attribute}"
                rows.append(_judge_one(pair, criterion, column, label, attribute, sizes,
                                       unit))
    return pd.DataFrame(rows, columns=COLUMNS)


def _ordered(grid: pd.DataFrame) -> pd.DataFrame:
    recommended = flag(grid, "recommended")
    return pd.concat([grid[recommended], grid[~recommended]]).assign(
        recommended=lambda df: flag(df, "recommended"))


def flag(df: pd.DataFrame, column: str) -> pd.Series:
    """A boolean column of a table read from CSV (True/False, 1/0, maybe missing) as bools;
    all False when there is no such column."""
    if column not in df.columns:
        return pd.Series(False, index=df.index)
    return df[column].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


def _attributes_of(criterion: Criterion, grid: pd.DataFrame) -> list[str | None]:
    if not _is_gap(criterion.figure):
        return [None]
    found = gap_attributes(grid)
    asked = list(criterion.attributes) if criterion.attributes is not None else found
    return asked or [None]  # no attribute at all: one row, not measured


def _is_gap(figure: str) -> bool:
    overall = ("accuracy", "balanced_accuracy", "auc", "flip_rate")
    return figure not in overall and figure.removeprefix("shifted.") not in overall


def _judge_one(pair: pd.Series, c: Criterion, column: str, label: str, attribute: str | None,
               sizes, unit: str) -> dict:
    value, lo, hi = (_number(pair.get(k)) for k in (column, f"{column}_lo", f"{column}_hi"))
    p_adj = _number(pair.get(f"{column}_p_adj"))
    status, reason = _status(c, column, pair, value, lo, hi, p_adj)
    # the groups behind the figure: an attribute's groups, or the whole (shifted) test set
    where = "shifted" if c.figure.startswith("shifted.") else "test"
    behind = sizes.get((pair["scheme"], pair["method"], where, attribute or "all"))
    return {
        "scheme": pair["scheme"], "method": pair["method"], "recommended": pair["recommended"],
        "criterion": label, "figure": column, "attribute": attribute or "",
        "bounds": c.bounds(), "value": value, "lo": lo, "hi": hi,
        "seed_sd": _number(pair.get(f"{column}_seed_sd")), "p_adj": p_adj,
        "status": status, "reason": reason,
        "groups": "" if behind is None else sizes_text(behind, unit),
        **{f"min_{k}": np.nan if behind is None else behind[k].min()
           for k in ("patients", "positives", "negatives")},
    }


def _status(c: Criterion, column: str, pair: pd.Series, value, lo, hi, p_adj):
    if column not in pair.index:
        why = "no injected bias in this run" if "flip_rate" in column else "not in grid.csv"
        return NOT_MEASURED, f"{column}: {why}"
    if np.isnan(value):
        return NO_DATA, _why_missing(pair, column)
    inside = c.within(value)
    if c.require_interval:
        if np.isnan(lo) or np.isnan(hi):
            return NO_DATA, "no confidence interval (evaluate.n_boot = 0?)"
        low, high = _interval(lo, hi, c.abs)
        if c.within(low) and c.within(high):
            inside = True
        elif _outside(c, low, high):
            inside = False
        else:
            return NO_DATA, f"the interval [{lo:.3g}, {hi:.3g}] crosses a bound of {c.bounds()}"
    if inside:
        return PASSED, ""
    if c.alpha is not None:
        if np.isnan(p_adj):
            return NO_DATA, "outside the bounds, but no adjusted p-value (evaluate.n_perm = 0?)"
        if p_adj > c.alpha:
            return NO_DATA, (f"outside the bounds, but the adjusted p-value {p_adj:.3g} > "
                             f"{c.alpha:g}: the gap may be chance")
    return FAILED, ""


def _interval(lo: float, hi: float, absolute: bool) -> tuple[float, float]:
    """The interval of the value, or of its absolute value."""
    if not absolute:
        return lo, hi
    if lo <= 0 <= hi:
        return 0.0, max(-lo, hi)
    return min(abs(lo), abs(hi)), max(abs(lo), abs(hi))


def _outside(c: Criterion, low: float, high: float) -> bool:
    """The whole interval [low, high] (of |x| when abs) lies beyond one bound."""
    return (c.max is not None and low > c.max) or (c.min is not None and high < c.min)


def _why_missing(pair: pd.Series, column: str) -> str:
    """The grid's reason for a missing figure: its ``insufficient`` entry, else ``warning``."""
    prefix, _, figure = column.rpartition(".")
    text = pair.get(f"{prefix}.insufficient" if prefix else "insufficient")
    for part in str(text).split("; ") if isinstance(text, str) else []:
        names, _, why = part.partition(": ")
        if figure in names.split(", "):
            return why
    warning = pair.get("warning")
    return warning if isinstance(warning, str) and warning else "undefined on the test set"


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _sizes(groups: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """(scheme, method, set, attribute) -> its groups' rows (one seed's: sizes are the same)."""
    need = ["scheme", "method", "set", "attribute", "group", "patients", "positives",
            "negatives"]
    missing = [c for c in need if c not in groups.columns]
    if missing:
        raise ValueError(f"groups: missing column(s) {missing}; found {list(groups.columns)}")
    keys = ["scheme", "method", "set", "attribute", "group"]
    table = groups.drop_duplicates(keys)
    return {key: part for key, part in table.groupby(keys[:4], sort=False)}


def sizes_text(rows: pd.DataFrame, unit: str = UNITS) -> str:
    """``s=0: 37 patients, 4 positives, 33 negatives; s=1: ...`` for the rows of groups.csv,
    the units (its ``patients`` column) called ``unit``; images are named too when they
    outnumber the units."""
    parts = []
    for r in rows.itertuples():
        images = (f"{int(r.n)} {IMAGES} of " if "n" in rows and r.n != r.patients
                  and unit != IMAGES else "")
        parts.append(f"{r.group}: {images}{int(r.patients)} {unit}, {int(r.positives)} "
                     f"positives, {int(r.negatives)} negatives")
    return "; ".join(parts)


def summarise(verdict: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """One verdict per (scheme, method), in the order of :func:`judge`.

    ``failed`` when a criterion failed or the model is degenerate (grid's ``degenerate``: its
    fairness figures compare nothing, a constant model has DI 1); else ``not enough data``
    when a criterion lacks data or none was measured; else ``passed``.
    """
    flags = dict(zip(zip(grid["scheme"], grid["method"], strict=True),
                     flag(grid, "degenerate"), strict=True))
    warnings = dict(zip(zip(grid["scheme"], grid["method"], strict=True),
                        grid.get("warning", pd.Series("", index=grid.index)), strict=True))
    rows = []
    for (scheme, method), part in verdict.groupby(["scheme", "method"], sort=False):
        count = part["status"].value_counts()
        degenerate = bool(flags.get((scheme, method), False))
        failed = [f"{r.criterion} = {r.value:.3g} (expected {r.bounds})"
                  for r in part[part["status"] == FAILED].itertuples()]
        if degenerate:
            verdict_, reason = FAILED, f"degenerate model: {warnings[(scheme, method)]}"
        elif failed:
            verdict_, reason = FAILED, "failed: " + "; ".join(failed)
        elif count.get(NO_DATA, 0):
            lacking = part.loc[part["status"] == NO_DATA, "criterion"]
            verdict_, reason = NO_DATA, "not enough data: " + ", ".join(lacking)
        elif not count.get(PASSED, 0):
            verdict_, reason = NO_DATA, "no criterion measured"
        else:
            verdict_, reason = PASSED, "every criterion passed"
        rows.append({"scheme": scheme, "method": method,
                     "recommended": bool(part["recommended"].iloc[0]), "degenerate": degenerate,
                     "verdict": verdict_, "passed": int(count.get(PASSED, 0)),
                     "failed": int(count.get(FAILED, 0)),
                     "not_enough_data": int(count.get(NO_DATA, 0)),
                     "not_measured": int(count.get(NOT_MEASURED, 0)), "reason": reason})
    return pd.DataFrame(rows, columns=SUMMARY)


def model_warnings(grid: pd.DataFrame, groups: pd.DataFrame, *, min_group_size: int,
                   min_class_size: int, unit: str = UNITS, gap: str | None = None
                   ) -> pd.DataFrame:
    """What to read before the figures, one row each (:data:`WARNINGS`).

    - ``degenerate``: grid's ``degenerate`` pairs with their ``warning`` (constant decisions or
      scores, AUC interval containing 0.5, a model that learnt nothing);
    - ``not applicable``: methods postprocess could not fit;
    - ``small group``: a test group (of any attribute) with fewer than ``min_group_size``
      units (``unit``: patients, images or both, as in :func:`judge`) or fewer than
      ``min_class_size`` positives or negatives. Test groups are the same for every pair: these
      rows have an empty scheme and method;
    - ``fairness cost``: the recommendation traded a raw parity gap (``gap``, the grid column of
      ``evaluate.pareto_gap``, e.g. ``s.disparate_impact``) while the groups' base rates differ
      beyond its interval (:func:`biaslab.fairness.costs.raw_gap_warning`).
    """
    rows = []
    degenerate = flag(grid, "degenerate")
    for (_, pair), bad in zip(grid.iterrows(), degenerate, strict=True):
        text = pair.get("warning")
        text = text if isinstance(text, str) else ""
        if text.startswith("not applicable"):
            rows.append((pair["scheme"], pair["method"], "not applicable", text))
        elif bad or text:
            rows.append((pair["scheme"], pair["method"], "degenerate",
                         text or "flagged degenerate by evaluate"))
    for r in test_groups(groups).itertuples():
        short = [f"{int(v)} {k}" for k, v, floor in (
            (unit, r.patients, min_group_size), ("positives", r.positives, min_class_size),
            ("negatives", r.negatives, min_class_size)) if v < floor]
        if short:
            rows.append(("", "", "small group", (
                f"test group {r.group} has only {', '.join(short)} (report.min_group_size = "
                f"{min_group_size}, report.min_class_size = {min_class_size}): its rates and "
                "every gap comparing it rest on few cases")))
    raw = raw_gap_warning(grid, gap) if gap else ""
    if raw:
        rows.append(("", "", "fairness cost", raw))
    return pd.DataFrame(rows, columns=WARNINGS)


def test_groups(per_group: pd.DataFrame) -> pd.DataFrame:
    """Each test group's row of ``per_group`` (evaluate's groups table), once: its sizes are
    the same for every (scheme, method)."""
    test = per_group[(per_group["set"] == "test") & (per_group["attribute"] != "all")]
    return test.drop_duplicates(["attribute", "group"])


def top_pair(verdict: pd.DataFrame, summary: pd.DataFrame
             ) -> tuple[pd.Series, bool, pd.DataFrame]:
    """The recommended pair's row of ``summary`` (without one, the first row), whether it was
    recommended, and its rows of ``verdict``. ``summary`` must not be empty."""
    top = summary[summary["recommended"]].head(1)
    chosen = not top.empty
    top = (top if chosen else summary.head(1)).iloc[0]
    mine = verdict[(verdict["scheme"] == top["scheme"]) & (verdict["method"] == top["method"])]
    return top, chosen, mine


def metric(verdict: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """``metrics/verdict.json``: the recommended pair's verdict and, per criterion, its status
    and value: ``{"pair": "none/fixed", "verdict": "failed", "flip_rate": {"status":
    "failed", "value": 0.31}, ...}``, short for ``dvc exp show``. Without a recommended pair,
    the first one."""
    if summary.empty:
        return {"pair": None, "verdict": NO_DATA}
    top, _, mine = top_pair(verdict, summary)
    return {"pair": f"{top['scheme']}/{top['method']}", "verdict": top["verdict"]} | {
        r.criterion: {"status": r.status,
                      "value": None if np.isnan(r.value) else round(float(r.value), 4)}
        for r in mine.itertuples()}
