"""Several training seeds of one model: one row of figures, whose interval includes the seeds.

**Why.** A model's figures move with its training seed (the initial weights, the shuffles, the
augmentation): two models trained by the same recipe on the same data, differing only in the
seed, can differ in flip rate or disparate impact by more than the width of either's bootstrap
interval. That interval only says how much the figure of *this one model* would change on
another test set; it says nothing of how much the figure would change with another seed. So
one seed's interval is too narrow for the question the study asks, "what does this recipe
(scheme, threshold method) do?", and two recipes can look different when only their seeds
differ.

**What.** Each scheme is trained once per seed (``train.seeds``), and evaluate computes each
seed's row of ``grid.csv`` as before. :func:`combine` then makes one row per (scheme, method):
the figure is the mean over the m seeds, and its interval is that of the recipe's expected
figure, the average over all possible seeds. The mean over seeds errs in two ways: the seeds
drawn (the between-seed variance B, divided by m for a mean of m) and the test set, which every
seed shares (the within-seed sampling variance W, read back from each seed's bootstrap interval
as ((hi - lo) / (2 z))², averaged over the seeds; shared, so it does not shrink with m). Its
variance is T = W + B / m, and the interval is mean -/+ t √T with the Welch-Satterthwaite
degrees of freedom (Satterthwaite 1946), W being known from thousands of resamples:
df = (m - 1) (T / (B / m))². This is the two-level variance of a benchmark figure averaged over
training seeds on one test set (Bouthillier et al. 2021, "Accounting for variance in machine
learning benchmarks", MLSys). ``FIGURE_seed_sd`` (√B) gives the spread between the seeds alone:
how far one model trained by the same recipe may stray from the mean; a new seed's figure lies
about as far as t √(W + (1 + 1/m) B) from it.

**Why not the bootstrap replicates of every seed pooled into one percentile interval.** Pooling
needs the replicates, which evaluate does not keep (this needs only each seed's interval); and
the pooled replicates have a variance of about W + (1 - 1/m) B, the spread of single models,
not of their mean, with a normal quantile where few seeds call for Student's t. Simulated in
``tests/test_seeds.py`` (3 seeds, seed sd 0.04, sampling sd 0.03, half of its variance shared):
the interval covers the recipe's average in about 95% of the runs, one seed's own bootstrap
interval in 76%.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

# Natural range of each figure, by its name without the prefixes (``shifted.``, ``s.``): the
# combined interval is clipped to it, as a percentile interval never leaves it.
UNIT = (0.0, 1.0)
RANGES = {
    **dict.fromkeys(  # rates, accuracies, AUC, calibration error; ranges of rates
        ("prevalence", "accuracy", "balanced_accuracy", "tpr", "fpr", "ppv", "selection_rate",
         "flip_rate", "auc", "calibration_error", "worst_group_balanced_accuracy",
         "equalized_odds_difference", "auc_gap"), UNIT),
    **dict.fromkeys(  # differences of two rates
        ("statistical_parity_difference", "equal_opportunity_difference",
         "average_odds_difference", "base_statistical_parity_difference"), (-1.0, 1.0)),
    # a difference of two differences of rates: SPD - base SPD
    "excess_statistical_parity_difference": (-2.0, 2.0),
    # ratios
    **dict.fromkeys(("disparate_impact", "base_disparate_impact", "excess_disparate_impact"),
                    (0.0, math.inf)),
}
COUNTS = ("n", "patients")  # with any prefix (shifted.n): the test set's, the same every seed
TEXTS = ("warning", "insufficient", "undefined", "groups")  # with any prefix (s.groups)
DROPPED = ("_p", "_p_adj")  # p-values: the caller tests the seeds jointly
SEED_SD = "_seed_sd"


def natural_range(figure: str) -> tuple[float, float]:
    """The range a figure's values lie in, from its name (``shifted.s.disparate_impact``:
    [0, inf)); (-inf, inf) for a name :data:`RANGES` does not know (nothing clipped)."""
    return RANGES.get(figure.rsplit(".", 1)[-1], (-math.inf, math.inf))


def combine(per_seed: pd.DataFrame, *, by: Sequence[str] = ("scheme", "method"),
            seed_col: str = "seed", level: float = 0.95,
            constant: Iterable[str] = ()) -> pd.DataFrame:
    """One row per group of ``by`` from one row per seed: the mean over the seeds, with the
    interval of the recipe's expected figure.

    For each figure X (a column with ``X_lo`` and ``X_hi``), over the m seeds s of a group,
    with the seeds' points x_s and intervals [lo_s, hi_s] at ``level``:

    - point: x̄ = (1/m) Σ x_s;
    - within-seed variance: W = mean over the seeds of u_s = ((hi_s - lo_s) / (2 z))²,
      z = Φ⁻¹((1 + level) / 2): the bootstrap variance read back from each seed's interval
      (exact for a normal bootstrap distribution; a skewed one loses its asymmetry);
    - between-seed variance: B = Σ (x_s - x̄)² / (m - 1);
    - variance of the mean: T = W + B / m (the test set's error is shared by every seed, the
      seeds' averages out over m);
    - degrees of freedom (Welch-Satterthwaite, W known): ν = (m - 1) (T / (B / m))² (∞ when
      B = 0);
    - interval: x̄ ∓ t_{ν, (1+level)/2} √T, clipped to :func:`natural_range` of X.

    Also ``X_seed_sd`` = √B, the spread due to training alone.

    One seed (m = 1): the row as it is, with its own interval, and ``X_seed_sd`` NaN. A seed
    whose X is NaN (too few cases, not applicable) makes the combined X, its interval and
    ``X_seed_sd`` NaN; when other seeds have X, ``PREFIX.insufficient`` (``insufficient`` for
    an overall figure) says so: ``flip_rate: missing for seed 2 of 0 1 2``. A seed whose
    interval is NaN (``evaluate.n_boot = 0``) is left out of W, which then comes from the
    other seeds, and is 0 when none has an interval: the interval is then the between-seed
    one alone.

    The other columns:

    - counts (``n``, ``patients``, with any prefix, and ``constant``): the same for every seed
      (the same test set), taken once; a seed where the count is missing (a method not
      applicable there) is skipped; different values are an error;
    - texts (``warning``, ``insufficient``, ``undefined``, ``groups``, with any prefix, and
      other text columns): a text all the seeds share is kept once; different ones are given
      per seed, the seeds with the same text together, those without one left out:
      ``seed 0: TEXT; seeds 1 2: OTHER``;
    - booleans (``degenerate``): true when it is true for any seed. ``pareto`` and
      ``recommended`` too: the caller chooses them again from the combined validation figures;
    - other numbers (``val.balanced_accuracy``, ``fairness_cost``, ...): the mean over the
      seeds, NaN when a seed's is NaN;
    - p-values (``*_p``, ``*_p_adj``): dropped; the caller tests the seeds together;
    - ``seed_col`` is replaced by ``seeds``, the group's seeds in increasing order (``0 1 2``).

    Parameters
    ----------
    per_seed : one row per seed and group, as evaluate's grid (``metrics/grid.csv``).
    by : the columns that name a group.
    seed_col : the column of the training seed; a seed may appear once per group.
    level : the level of the seeds' intervals, and of the combined ones.
    constant : more columns that must be the same for every seed of a group.

    Returns
    -------
    pandas.DataFrame
        One row per group, in the order of their first rows: the ``by`` columns, ``seeds``,
        then the other columns of ``per_seed`` in their order (``X_seed_sd`` after ``X_hi``),
        but ``seed_col`` and the p-values; an ``insufficient`` column that a missing figure
        needs and ``per_seed`` lacks comes last.
    """
    by, constant = list(by), set(constant)
    _check(per_seed, by, seed_col, level)
    codes = per_seed.groupby(by, sort=False, dropna=False).ngroup().to_numpy()
    # rows in group order, each group's seeds in increasing order
    order = np.lexsort((per_seed[seed_col].to_numpy(), codes))
    rows, codes = per_seed.iloc[order].reset_index(drop=True), codes[order]
    _check_unique_seeds(rows, codes, by, seed_col)
    first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    m = np.diff(np.r_[first, len(codes)])
    seeds = rows.groupby(codes, sort=True)[seed_col].agg(lambda s: " ".join(map(_seed, s)))

    out = {c: rows[c].to_numpy()[first] for c in by} | {"seeds": seeds.to_numpy()}
    missing: dict[str, list[dict[str, list[str]]]] = {}  # figures some seeds lack
    figures = [c for c in rows if f"{c}_lo" in rows and f"{c}_hi" in rows]
    bounds = {f"{f}{end}" for f in figures for end in ("_lo", "_hi")}
    for col in rows.columns:
        if col in by or col == seed_col or col in bounds or col.endswith(DROPPED):
            continue
        if col in figures:
            out |= _figure(rows, col, codes, first, m, level)
            _note_missing(rows[col], col, codes, seeds, missing)
        elif col in constant or col.rsplit(".", 1)[-1] in COUNTS:
            out[col] = _constant(rows, col, codes, first, by, seed_col)
        elif _is_bool(rows[col]):
            out[col] = rows[col].eq(True).groupby(codes).any().to_numpy()
        elif col.rsplit(".", 1)[-1] in TEXTS or not pd.api.types.is_numeric_dtype(rows[col]):
            out[col] = _texts(rows, col, codes, seed_col)
        else:  # a number without an interval: the mean, NaN when a seed's is NaN
            values = pd.to_numeric(rows[col], errors="coerce")
            out[col] = values.groupby(codes).mean().where(
                ~values.isna().groupby(codes).any()).to_numpy()
    for col, notes in missing.items():  # after the seeds' own reasons
        out[col] = [_join([text, *(f"{', '.join(names)}: missing for {which}"
                                   for which, names in note.items())])
                    for text, note in zip(out.get(col, [None] * len(first)), notes,
                                          strict=True)]
    return pd.DataFrame(out)


def _check(per_seed: pd.DataFrame, by: list[str], seed_col: str, level: float) -> None:
    absent = [c for c in [*by, seed_col] if c not in per_seed]
    if absent:
        raise ValueError(f"combining seeds: no column {', '.join(absent)} in the table "
                         f"(columns: {', '.join(map(str, per_seed.columns))})")
    if not 0 < level < 1:
        raise ValueError(f"combining seeds: level = {level!r}; expected a number in (0, 1)")
    if per_seed[seed_col].isna().any():
        raise ValueError(f"combining seeds: {seed_col} is missing in row(s) "
                         f"{per_seed.index[per_seed[seed_col].isna()].tolist()}")


def _seed(seed) -> str:
    """A seed as written in params.yaml (0, not 0.0 when a CSV made the column float)."""
    return str(int(seed)) if isinstance(seed, float | np.floating) and seed.is_integer() else (
        str(seed))


def _group_name(rows: pd.DataFrame, i: int, by: list[str]) -> str:
    return ", ".join(f"{c}={rows[c].iloc[i]}" for c in by)


def _check_unique_seeds(rows: pd.DataFrame, codes: np.ndarray, by: list[str],
                        seed_col: str) -> None:
    seed = rows[seed_col].to_numpy()
    twice = np.flatnonzero((codes[1:] == codes[:-1]) & (seed[1:] == seed[:-1]))
    if len(twice):
        i = twice[0]
        raise ValueError(f"combining seeds: {seed_col} {_seed(seed[i])} appears more than once for "
                         f"{_group_name(rows, i, by)}; each seed once per group")


def _figure(rows: pd.DataFrame, col: str, codes: np.ndarray, first: np.ndarray,
            m: np.ndarray, level: float) -> dict[str, np.ndarray]:
    """X, X_lo, X_hi and X_seed_sd of each group (vectorised over the groups)."""
    x, lo, hi = (pd.to_numeric(rows[c], errors="coerce").to_numpy(float)
                 for c in (col, f"{col}_lo", f"{col}_hi"))
    def total(values):  # sum over each group's seeds
        return np.bincount(codes, weights=values, minlength=len(m))

    absent = total(np.isnan(x)) > 0
    mean = total(np.nan_to_num(x)) / m
    with np.errstate(divide="ignore", invalid="ignore"):
        between = total((np.nan_to_num(x) - mean[codes]) ** 2) / (m - 1)  # NaN when m = 1
        z = stats.norm.ppf((1 + level) / 2)
        u = ((hi - lo) / (2 * z)) ** 2
        has = np.isfinite(u)
        within = np.where(total(has) > 0, total(np.where(has, u, 0.0)) / total(has), 0.0)
        of_mean = between / m
        var = within + of_mean
        df = np.where(between > 0, (m - 1) * (var / of_mean) ** 2, np.inf)
        half = stats.t.ppf((1 + level) / 2, df) * np.sqrt(var)
    low, high = natural_range(col)
    one = m == 1  # the seed's own interval
    point = np.where(absent, np.nan, mean)
    out_lo = np.where(one, lo[first], np.clip(point - half, low, high))
    out_hi = np.where(one, hi[first], np.clip(point + half, low, high))
    sd = np.where(absent | one, np.nan, np.sqrt(between))
    return {col: point, f"{col}_lo": np.where(absent, np.nan, out_lo),
            f"{col}_hi": np.where(absent, np.nan, out_hi), f"{col}{SEED_SD}": sd}


def _note_missing(values: pd.Series, col: str, codes: np.ndarray, seeds: pd.Series,
                  missing: dict[str, list[dict[str, list[str]]]]) -> None:
    """Where some seeds but not all lack the figure, note it for its ``insufficient`` column:
    ``missing[column][group]`` maps ``seed S of SEEDS`` to the names of the figures."""
    prefix, _, name = col.rpartition(".")
    notes = missing.setdefault(f"{prefix}.insufficient" if prefix else "insufficient",
                               [{} for _ in range(len(seeds))])
    for i, (_, gone) in enumerate(values.isna().groupby(codes)):
        every = seeds.iloc[i].split()
        lacking = [s for s, g in zip(every, gone, strict=True) if g]
        if 0 < len(lacking) < len(every):
            word = "seed" if len(lacking) == 1 else "seeds"
            notes[i].setdefault(f"{word} {' '.join(lacking)} of {seeds.iloc[i]}", []).append(name)


def _constant(rows: pd.DataFrame, col: str, codes: np.ndarray, first: np.ndarray,
              by: list[str], seed_col: str) -> np.ndarray:
    """The count every seed of a group has (seeds without one skipped); else an error."""
    values = rows[col]
    for code, group in values.groupby(codes):
        seen = group.dropna()
        if seen.nunique() > 1:
            at = group.index[0]
            said = ", ".join(f"seed {_seed(rows[seed_col].iloc[i])}: {v}" for i, v in seen.items())
            raise ValueError(f"combining seeds: {col} differs between the seeds of "
                             f"{_group_name(rows, at, by)} ({said}); it must be the same for "
                             "every seed (one test set)")
        if len(seen) and pd.isna(values.iloc[first[code]]):
            values = values.copy()
            values.iloc[first[code]] = seen.iloc[0]
    return values.to_numpy()[first]


def _is_bool(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values):
        return True
    present = values.dropna()
    return values.dtype == object and len(present) > 0 and all(
        isinstance(v, bool | np.bool_) for v in present)


def _texts(rows: pd.DataFrame, col: str, codes: np.ndarray, seed_col: str) -> list:
    """One text per group: the seeds' shared text, or each text with its seeds."""
    out = []
    for _, group in rows[[seed_col, col]].groupby(codes):
        by_text: dict[str, list[str]] = {}
        for seed, text in zip(group[seed_col], group[col], strict=True):
            key = "" if pd.isna(text) else str(text)
            by_text.setdefault(key, []).append(_seed(seed))
        if len(by_text) == 1:  # the same text (or none, "") for every seed, kept as it is
            out.append(next(iter(by_text)))
            continue
        out.append("; ".join(f"{'seed' if len(s) == 1 else 'seeds'} {' '.join(s)}: {t}"
                             for t, s in by_text.items() if t))
    return out


def _join(texts: Iterable[str | None]) -> str:
    """The texts that say something, joined; "" when none does (as evaluate writes no text)."""
    return "; ".join(t for t in texts if isinstance(t, str) and t)
