"""The sweep's figure (``reports/sweep.png``): the headline figures against the swept value.

Drawn from the table of :mod:`biaslab.sweep.table` (``metrics/sweep.csv``), one line per scheme,
the training seeds of each value combined into a mean and an interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import pandas as pd

from biaslab.fairness.across_seeds import combine as combine_seeds
from biaslab.fairness.costs import RATIO_GAPS
from biaslab.sweep.table import (
    BIAS_STRENGTH,
    EXCESS_DI,
    FAILED,
    ID_COLUMNS,
    SUCCESS,
)


def plotted_figures(columns: Iterable[str]) -> list[str]:
    """DI, excess DI, flip rate and shifted accuracy: those of them that ``columns`` has."""
    columns = list(columns)
    di = next((c for c in columns if re.fullmatch(r"[^.]+\.disparate_impact", c)), None)
    wanted = [di, di and di.replace("disparate_impact", EXCESS_DI), "flip_rate",
              "shifted.accuracy"]
    return [c for c in wanted if c and c in columns]


_LABELS = {"disparate_impact": "disparate impact (DI)", EXCESS_DI: "excess DI (DI / base-rate DI)",
           "flip_rate": "flip rate (S forced 0 -> 1)", "shifted.accuracy": "shifted-test accuracy"}


def _axis(table: pd.DataFrame) -> tuple[dict, list[str], str]:
    """x of each swept value, the tick labels and the axis label.

    The values themselves when all are numbers, else their ranks (categories, e.g. models);
    the ticks of a bias sweep also give p0/p1.
    """
    values = list(dict.fromkeys(table["value"]))
    param = str(table["param"].iloc[0]) if len(table) else "value"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return {v: float(i) for i, v in enumerate(values)}, [str(v) for v in values], param
    if param == BIAS_STRENGTH:
        ticks = [f"{v:g}\n{0.5 - v:.4g}/{0.5 + v:.4g}" for v in values]
        return {v: float(v) for v in values}, ticks, "bias strength k, and p0/p1 = 0.5 -/+ k"
    return {v: float(v) for v in values}, [f"{v:g}" for v in values], param


def _draw(ax, rows: pd.DataFrame, figure: str, x_of: dict, color: str, label: str,
          level: float) -> None:
    """One scheme in one panel: the seeds combined (biaslab.fairness.across_seeds: the mean, and
    its interval
    as the band), a dot per seed."""
    numbers = rows[["value", "seed"]].assign(**{
        c: pd.to_numeric(rows[c], errors="coerce")
        for c in (figure, f"{figure}_lo", f"{figure}_hi") if c in rows})
    combined = combine_seeds(numbers, by=["value"], level=level)
    combined = combined.assign(x=combined["value"].map(x_of)).sort_values("x")
    ax.plot(combined["x"], combined[figure], "-o", color=color, label=label, markersize=4)
    if f"{figure}_lo" in combined:
        ax.fill_between(combined["x"], combined[f"{figure}_lo"], combined[f"{figure}_hi"],
                        color=color, alpha=0.18, linewidth=0)
    ax.scatter(rows["value"].map(x_of), numbers[figure], s=9, color=color, alpha=0.7)


def sweep_figure(table: pd.DataFrame, *, method: str = "fixed", level: float = 0.95):
    """DI, excess DI, flip rate and shifted-test accuracy against the swept value, per scheme.

    One panel per figure (those the table has), one line per scheme: the seeds of each value
    combined by :func:`biaslab.fairness.across_seeds.combine`, the line their mean and the band its
    interval
    (the interval of the mean over seeds: each seed's bootstrap interval at ``level``, the
    level of the experiments' ``evaluate.level``, widened by the spread between the seeds; a
    value with one seed left
    shows that seed's own interval; a value where a seed lacks the figure has none); a dot per
    seed. Only the rows of ``method`` (``fixed``: the model's own 0.5 threshold). A value with
    a failed experiment is marked by a red dashed line, and the failures are named above the
    panels. Returns a :class:`matplotlib.figure.Figure` (neither shown nor saved).
    """
    from matplotlib.figure import Figure

    table = table.reindex(columns=list(dict.fromkeys([*ID_COLUMNS, *table.columns])))
    panels = plotted_figures(table.columns)
    x_of, ticks, xlabel = _axis(table)
    ok = table[(table["status"] == SUCCESS) & (table["method"] == method)]
    failed = table[table["status"] == FAILED]
    ncols = min(len(panels), 2) or 1
    nrows = max(math.ceil(len(panels) / ncols), 1)
    fig = Figure(figsize=(5.2 * ncols, 3.4 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, figure in zip(axes, panels, strict=False):
        for i, (scheme, rows) in enumerate(ok.groupby("scheme", sort=False)):
            _draw(ax, rows, figure, x_of, f"C{i}", str(scheme), level)
        for value in dict.fromkeys(failed["value"]):
            ax.axvline(x_of[value], color="red", linestyle="--", linewidth=0.8, alpha=0.6)
        if figure.rpartition(".")[2] in RATIO_GAPS:  # ratios, as the fairness cost reads them
            ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_title(_LABELS.get(figure.split(".", 1)[-1], _LABELS.get(figure, figure)),
                     fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_xticks(list(x_of.values()), ticks, fontsize=7)
        if not ok.empty:
            ax.legend(fontsize=7, title=method, title_fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    trained = ", ".join(str(int(s)) for s in sorted(table["seed"].dropna().unique()))
    note = (f"{method} decisions; line: mean over training seeds {trained}; band: its "
            f"{level * 100:g}% interval (the seeds' bootstrap intervals widened by the spread "
            "between seeds); dots: one per seed")
    if len(failed):
        note += "\nfailed (red dashes), no figures: " + ", ".join(
            f"{v} (seed {int(s)})" for v, s in zip(failed["value"], failed["seed"], strict=True))
    if ok.empty:
        note += f"\nno experiment has {method} decisions to show"
    fig.suptitle(note, fontsize=8)
    return fig
