"""A rank test of methods: does any (training method, threshold method) beat plain training?

Each *block* (a training seed; with a sweep, a seed x value; with several data sets, a seed x
data set) gives every *method* one figure (balanced accuracy, a gap's cost, ...). Ranking the
methods within each block and comparing the mean ranks is the non-parametric comparison of
Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7:

- **Friedman's test** of "all methods are equivalent": with N blocks, k methods and R_j the mean
  rank of method j (1 is best),
  χ²_F = 12N / (k(k+1)) · (Σ_j R_j² − k(k+1)²/4), with k − 1 degrees of freedom (scipy's
  ``friedmanchisquare`` adds the correction for ties), and Iman and Davenport's (1980) less
  conservative F_F = (N − 1) χ²_F / (N(k − 1) − χ²_F), with k − 1 and (k − 1)(N − 1) degrees
  of freedom;
- the **Nemenyi critical difference** CD = q_α √(k(k+1) / (6N)), q_α the studentized range's
  1 − α quantile for k means over √2: two methods whose mean ranks differ by more than CD
  differ (the critical-difference diagram draws it);
- each method **against a control** (plain training, ERM) by Wilcoxon's signed-rank test on the
  paired figures across blocks, the p-values corrected by Holm (Benavoli, Corani and Mangili
  (2016), "Should we really use post-hoc tests based on mean-ranks?", JMLR 17, recommend this
  over comparisons of mean ranks, whose outcome depends on the other methods in the test).

With few blocks the tests have little power: Wilcoxon's exact two-sided p-value is at least
2 / 2^N (0.25 with 3 seeds), so no method can "significantly" beat ERM on three seeds whatever
the figures; :attr:`RankTest.min_p` says so and :func:`sentence` repeats it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats

from biaslab.config.report import ReportConfig
from biaslab.fairness.corrections import adjust
from biaslab.fairness.costs import cost_text, fairness_cost


@dataclass(frozen=True)
class RankTest:
    """The outcome of :func:`rank_test` (see the module's docstring for the formulas).

    ``ranks``: one row per method (``method``, ``mean_rank``, ``mean``: the figure's mean over
    the blocks), best first. ``pairwise``: one row per method but the control (``method``,
    ``difference``: mean of method − control, ``p``, ``p_holm``, ``outcome``: ``better``,
    ``worse`` or ``no difference shown``). ``dropped``: the blocks left out because a method
    had no figure there (named, never silently).
    """

    figure: str
    higher_is_better: bool
    level: float
    n_blocks: int
    n_methods: int
    ranks: pd.DataFrame
    friedman: float
    friedman_p: float
    iman_davenport: float
    iman_davenport_p: float
    cd: float
    control: str | None
    pairwise: pd.DataFrame
    min_p: float
    dropped: tuple[str, ...]


def rank_test(table: pd.DataFrame, *, figure: str, methods: Sequence[str],
              blocks: Sequence[str], higher_is_better: bool = True,
              control: str | None = None, level: float = 0.05,
              name: str | None = None) -> RankTest:
    """Rank the methods of ``table`` on ``figure`` within each block, and test the ranks.

    Parameters
    ----------
    table : one row per (method, block), e.g. metrics/seeds.csv (``scheme``, ``method``,
        ``seed``, figures).
    figure : the column compared (e.g. ``balanced_accuracy``).
    methods : the columns naming a method, joined by ``/`` (``["scheme", "method"]`` gives
        ``none/fixed``).
    blocks : the columns naming a block (``["seed"]``; with a sweep ``["seed", "value"]``).
    higher_is_better : False for a cost or a gap's distance from its ideal.
    control : the method the others are tested against (``none/fixed``: plain training, no
        threshold method); None: no pairwise tests.
    level : the level of the Nemenyi critical difference and of the pairwise outcomes.
    name : the figure in words, in the sentence and the diagram (default: ``figure``).
    """
    for column in (figure, *methods, *blocks):
        if column not in table.columns:
            raise ValueError(f"rank test: no column {column!r}; the table has "
                             f"{', '.join(map(str, table.columns))}")
    if not 0 < level < 1:
        raise ValueError(f"rank test: level {level!r}: expected a number between 0 and 1")
    wide, dropped = _wide(table, figure, list(methods), list(blocks))
    n, k = wide.shape
    if k < 2 or n < 2:
        raise ValueError(f"rank test of {figure}: needs at least 2 methods and 2 blocks with a "
                         f"figure for every method; got {k} method(s), {n} block(s)"
                         + (f" ({len(dropped)} dropped for a missing figure)" if dropped else ""))
    if control is not None and control not in wide.columns:
        raise ValueError(f"rank test: control {control!r} is not a method of the table; "
                         f"methods: {', '.join(wide.columns)}")
    values = wide.to_numpy(dtype=float)
    ranks = stats.rankdata(-values if higher_is_better else values, axis=1)
    mean_rank = ranks.mean(axis=0)
    chi2, friedman_p = _friedman(values, ranks, n, k)
    denominator = n * (k - 1) - chi2
    f_f = (n - 1) * chi2 / denominator if denominator > 0 else np.inf
    f_p = float(stats.f.sf(f_f, k - 1, (k - 1) * (n - 1))) if np.isfinite(f_f) else 0.0
    order = np.argsort(mean_rank, kind="stable")
    summary = pd.DataFrame({"method": wide.columns[order], "mean_rank": mean_rank[order],
                            "mean": values.mean(axis=0)[order]})
    return RankTest(
        figure=name or figure, higher_is_better=higher_is_better, level=level, n_blocks=n,
        n_methods=k, ranks=summary.reset_index(drop=True), friedman=float(chi2),
        friedman_p=float(friedman_p), iman_davenport=float(f_f), iman_davenport_p=f_p,
        cd=float(_q(k, level) * np.sqrt(k * (k + 1) / (6 * n))), control=control,
        pairwise=_against(wide, control, higher_is_better, level), min_p=2.0 / 2 ** n,
        dropped=tuple(dropped))


CONTROL = "none/fixed"  # plain training (no weighting), no threshold method: ERM
SCORE = "rank_score"  # the column :func:`rank_figure` adds


def rank_figure(table: pd.DataFrame, figure: str) -> tuple[pd.DataFrame, str, bool]:
    """``table`` with the column ranked on, its name in words, and whether higher is better.

    A figure of the whole test set (``balanced_accuracy``, ``auc``, ...) is ranked as it is,
    higher better (``flip_rate``: lower better); a gap between groups (``s.equalized_odds_
    difference``) by its distance from its ideal, :func:`biaslab.fairness.costs.fairness_cost`
    (``|s.gap|``, ``|log s.disparate_impact|``), lower better.
    """
    if figure not in table.columns:
        known = [c for c in table.columns if c.rpartition("_")[2] not in ("lo", "hi", "sd")]
        raise ValueError(f"rank test: no figure {figure!r} in the table; figures: "
                         f"{', '.join(map(str, known))}")
    out = table.copy()
    if ranked_by(figure, f"rank test: {figure!r} is not a figure to rank on") == "cost":
        out[SCORE] = fairness_cost(out[figure], figure.rpartition(".")[2])
        return out, cost_text(figure), False
    out[SCORE] = pd.to_numeric(out[figure], errors="coerce")
    return out, figure, figure != "flip_rate"


def ranked_by(figure: str, lead: str) -> str:
    """How ``figure`` is ranked: ``higher`` is better (a figure of the test set), ``lower``
    (``flip_rate``), or ``cost`` (a gap ``ATTR.GAP``: its distance from its ideal); the
    figures are those a criterion may judge (:meth:`ReportConfig.figures`). Otherwise a
    ValueError, ``lead`` then the figures there are."""
    overall, gaps = ReportConfig.figures()
    attribute, _, metric = figure.rpartition(".")
    if figure in overall:
        return "lower" if figure == "flip_rate" else "higher"
    if attribute and metric in gaps:
        return "cost"
    raise ValueError(f"{lead}: expected a figure of the test set ({', '.join(overall)}) or a "
                     f"gap ATTR.GAP, GAP one of {', '.join(gaps)} (e.g. "
                     "s.equalized_odds_difference)")


def rank_methods(table: pd.DataFrame, figure: str, *, blocks: Sequence[str],
                 level: float = 0.05) -> RankTest:
    """Every (scheme, method) of ``table`` (metrics/seeds.csv, metrics/sweep.csv) ranked on
    ``figure`` (:func:`rank_figure`) within each block, tested against :data:`CONTROL` when the
    table has it."""
    scored, name, higher = rank_figure(table, figure)
    methods = set(scored["scheme"].astype(str) + "/" + scored["method"].astype(str))
    return rank_test(scored, figure=SCORE, name=name, methods=["scheme", "method"],
                     blocks=blocks, higher_is_better=higher, level=level,
                     control=CONTROL if CONTROL in methods else None)


def table_of(result: RankTest) -> pd.DataFrame:
    """One row per method: mean rank, mean, and the test against the control (empty cells for
    the control itself, or when there is none)."""
    return result.ranks.merge(result.pairwise, on="method", how="left")


def _wide(table, figure, methods, blocks) -> tuple[pd.DataFrame, list[str]]:
    """Blocks x methods of the figure; blocks where some method has none are dropped, named."""
    name = table[methods].astype(str).agg("/".join, axis=1)
    block = table[blocks].astype(str).agg(" ".join, axis=1)
    keyed = pd.DataFrame({"method": name, "block": block, "value": table[figure]})
    twice = keyed.duplicated(["method", "block"])
    if twice.any():
        first = keyed[twice].iloc[0]
        raise ValueError(f"rank test: method {first['method']} has two rows for block "
                         f"{first['block']!r} ({', '.join(blocks)}); expected one")
    wide = keyed.pivot(index="block", columns="method", values="value")
    missing = wide.isna().any(axis=1)
    return wide[~missing], [f"{', '.join(blocks)} {b}" for b in wide.index[missing]]


@lru_cache
def _q(k: int, level: float) -> float:
    """Nemenyi's q_α: the studentized range's 1 - α quantile for k means, over √2 (a numerical
    integral of about 0.1 s: computed once per k and level)."""
    return float(stats.studentized_range.ppf(1 - level, k, np.inf) / np.sqrt(2))


def _friedman(values, ranks, n, k) -> tuple[float, float]:
    if np.all(values == values[:, :1]):  # every block a tie: scipy divides by zero
        return 0.0, 1.0
    if k >= 3:
        chi2, p = stats.friedmanchisquare(*values.T)
        return float(chi2), float(p)
    # two methods: Friedman's statistic with the ties' correction, as scipy's for k >= 3
    mean = ranks.mean(axis=0)
    ties = sum((np.unique(row, return_counts=True)[1] ** 3 - 1).sum() for row in ranks)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(mean ** 2) - k * (k + 1) ** 2 / 4)
    chi2 /= 1 - ties / (n * (k ** 3 - k))
    return float(chi2), float(stats.chi2.sf(chi2, k - 1))


def _against(wide: pd.DataFrame, control, higher_is_better: bool, level: float) -> pd.DataFrame:
    columns = ["method", "difference", "p", "p_holm", "outcome"]
    if control is None:
        return pd.DataFrame(columns=columns)
    rows = []
    for method in wide.columns:
        if method == control:
            continue
        diff = (wide[method] - wide[control]).to_numpy(dtype=float)
        if np.all(diff == 0):
            p = 1.0  # identical on every block: no evidence either way (scipy refuses)
        else:
            p = float(stats.wilcoxon(diff, zero_method="zsplit", method="auto").pvalue)
        rows.append({"method": method, "difference": float(diff.mean()), "p": p})
    out = pd.DataFrame(rows, columns=columns[:3])
    out["p_holm"] = adjust(out["p"].to_numpy(), "holm")
    good = out["difference"] > 0 if higher_is_better else out["difference"] < 0
    out["outcome"] = np.where(out["p_holm"] > level, "no difference shown",
                              np.where(good, "better", "worse"))
    return out[columns]


def sentence(result: RankTest) -> str:
    """"Does any method beat the control?", answered in one sentence with its p-values."""
    n, k = result.n_blocks, result.n_methods
    head = (f"Ranked on {result.figure} over {n} blocks, the {k} methods "
            f"{'differ' if result.iman_davenport_p <= result.level else 'are not shown to differ'}"
            f" (Friedman p {_p(result.friedman_p)}, Iman-Davenport p "
            f"{_p(result.iman_davenport_p)}); best mean rank: {result.ranks['method'].iloc[0]} "
            f"({result.ranks['mean_rank'].iloc[0]:.2f}).")
    if result.dropped:
        head += (f" Left out, as some method had no figure there: {len(result.dropped)} "
                 f"block(s) ({'; '.join(result.dropped)}).")
    if result.control is None or result.pairwise.empty:
        return head
    better = result.pairwise[result.pairwise["outcome"] == "better"]
    if len(better):
        best = better.sort_values("p_holm").iloc[0]
        tail = (f" {len(better)} method(s) beat {result.control}: the strongest evidence is "
                f"{best['method']} (mean difference {best['difference']:+.3f}, Holm-adjusted "
                f"Wilcoxon p = {best['p_holm']:.3g}).")
    else:
        tail = (f" No method beats {result.control} (smallest Holm-adjusted Wilcoxon p = "
                f"{result.pairwise['p_holm'].min():.3g})")
        tail += (f"; with {n} blocks no p-value can fall below {result.min_p:.3g}: more seeds "
                 "could tell." if result.min_p > result.level else ".")
    return head + tail


def _p(p: float) -> str:
    """A p-value in words: 3 significant digits; below 1e-15 (all blocks agree: F is
    infinite, its p is 0) as ``< 1e-15``."""
    return "< 1e-15" if p < 1e-15 else f"= {p:.3g}"
