"""Two models compared on the same test images, paired: ``biaslab audit --compare A B``.

For every threshold method and every figure of the grid (accuracy, balanced accuracy, AUC) and
gap (``ATTR.GAP``; the base-rate gaps are the labels', the same for both, and left out), the
difference B - A, with

- a **paired** bootstrap interval: one resample of the test patients (or images) serves both
  models. The two models' rows are stacked as groups of their own (A's group g, B's group g)
  and the patients resampled with :func:`biaslab.fairness.bootstrap.binned_resamples`: a
  patient brings its images under both models, so the resampled A and B share the draw and the
  difference keeps their correlation (a shared hard case moves both). Var(B - A) =
  Var(A) + Var(B) - 2 Cov(A, B): with correlated models the paired interval is narrower than
  one from independent resamples (tested);
- a **paired** permutation p-value: under H0 the two models are exchangeable, so each
  patient's decisions (and scores) under A and under B may be swapped (a sign-flip test; Good
  2005, *Permutation, Parametric and Bootstrap Tests of Hypotheses*, ch. 3, on matched pairs).
  The statistic is |f(B) - f(A)| (|log f(B) - log f(A)| for a ratio such as the disparate
  impact) from binned histograms, as :mod:`biaslab.fairness.significance`; p = (1 + #{r:
  stat_r >= stat}) / (1 + #{r}) (Phipson and Smyth 2010). Its p-values are corrected together
  with the grid's (:func:`correct_together`, :mod:`biaslab.fairness.corrections`).

**Seeds.** With recipes of m seeds each (``--seeds-of``), seed i of A pairs with seed i of B,
in the order ``--seeds-of`` names them (both recipes need m seeds): the difference is the mean
over the pairs of each pair's, its interval that of :func:`biaslab.fairness.across_seeds.combine`
over the pairs (each pair's paired bootstrap variance plus the variance between the pairs,
Student's t with Welch-Satterthwaite degrees of freedom), and the permutation test swaps a
patient's outcomes under A and B for every pair at once, the statistic being |mean over the
pairs of f(B_i) - f(A_i)|. Pairing seed i with seed i is arbitrary when the seeds are
unrelated; it is exact when seed i of both recipes shares what a seed fixes (the initial
weights, the data order), and any pairing gives the same mean difference.

**Fairer.** For a gap, the model whose gap is closer to its ideal
(:func:`biaslab.fairness.costs.fairness_cost`: |gap|, |log| of a ratio, 1 - the worst-group
balanced accuracy) is the fairer; the data can tell when the difference's interval excludes 0
and its adjusted p-value is below 1 - ``level`` (the interval alone when ``n_perm`` is 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from biaslab.audit.table import Predictions
from biaslab.data.group_keys import SEP, group_keys, patient_units
from biaslab.fairness.across_seeds import combine
from biaslab.fairness.bootstrap import auc_from_bins, binned_resamples, score_bins
from biaslab.fairness.corrections import adjust
from biaslab.fairness.costs import RATIO_GAPS, fairness_cost
from biaslab.fairness.evaluate import attribute_sets, resample_unit
from biaslab.fairness.metrics import GAPS, rates
from biaslab.fairness.metrics import gaps as gaps_of
from biaslab.fairness.significance import _pvalue

OVERALL = ("accuracy", "balanced_accuracy", "auc")
MODEL_GAPS = tuple(g for g in GAPS if not g.startswith("base_"))  # the labels' gaps: A = B
PERM_BINS = 64  # score bins of the permutations' AUC, as significance's default
CHUNK = 1 << 21  # the largest (permutations x images) array of one chunk
DIFF = "|diff"  # suffix of a difference's columns while seeds are combined: no range clipping


def pair_models(predictions: Predictions, a: str, b: str) -> list[tuple[str, str]]:
    """The (model of A, model of B) pairs, seed i with seed i; errors for a bad pair.

    ``a`` and ``b`` are recipes of ``predictions`` (a model alone is a recipe of its own).
    Both need as many models and the same test images.
    """
    recipes = predictions.recipes
    for name in (a, b):
        if name not in recipes:
            raise ValueError(f"--compare {a} {b}: no model or recipe {name!r}; the table's are: "
                             f"{', '.join(recipes)}")
    if a == b:
        raise ValueError(f"--compare {a} {b}: expected two different models or recipes")
    ma, mb = list(recipes[a]), list(recipes[b])
    if len(ma) != len(mb):
        raise ValueError(f"--compare {a} {b}: {a!r} has {len(ma)} seed(s) and {b!r} "
                         f"{len(mb)}; seed i of one pairs with seed i of the other, so both "
                         "need as many (--seeds-of)")
    test = {name: set(recipes[name][models[0]].query("split == 'test'")["row"])
            for name, models in ((a, ma), (b, mb))}
    if test[a] != test[b]:
        ids = predictions.ids
        def named(rows):
            rows = sorted(rows)
            return ", ".join(repr(ids.iloc[r] if ids is not None else r) for r in rows[:3]) + (
                f" and {len(rows) - 3} more" if len(rows) > 3 else "")
        only = [f"{len(test[x] - test[y])} test image(s) of {x!r} are not in {y!r}: "
                f"{named(test[x] - test[y])}" for x, y in ((a, b), (b, a)) if test[x] - test[y]]
        raise ValueError(f"{predictions.source}: --compare {a} {b}: the models were not run on "
                         f"the same test images ({'; '.join(only)}); a paired comparison needs "
                         "both models' decisions on every test image")
    return list(zip(ma, mb, strict=True))


def _model_figures(counts: np.ndarray, pos: np.ndarray, neg: np.ndarray, attr: str,
                   overall: bool, with_scores: bool) -> dict[str, np.ndarray]:
    """Each figure's value from per-group sufficient statistics (..., groups, k)."""
    r = rates(counts)
    if with_scores:
        r["auc"] = auc_from_bins(pos, neg)
    g = gaps_of(r)
    out = {f"{attr}.{name}": g[name] for name in MODEL_GAPS}
    if overall:
        whole = rates(counts.sum(-2))
        out |= {"accuracy": whole["accuracy"], "balanced_accuracy": whole["balanced_accuracy"]}
        if with_scores:
            out["auc"] = auc_from_bins(pos.sum(-2), neg.sum(-2))
    return out


def on_scale(figure: str, values: np.ndarray) -> np.ndarray:
    """A figure on the scale its difference is tested on: log for a ratio."""
    if figure.rsplit(".", 1)[-1] in RATIO_GAPS:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(values)
    return values


def paired_bootstrap(y, d, scores, keys, units, *, attr: str, overall: bool, n_boot: int,
                     seed: int, bins: int = 256) -> dict[str, np.ndarray]:
    """B - A of every figure in ``n_boot`` paired resamples, ``{figure: (n_boot,)}``.

    ``d`` (and ``scores``, or None) is (2, n): A's then B's on the n test images; ``keys`` the
    group of each image, ``units`` its patient (or the image): whole units are resampled, with
    their images under both models (:func:`biaslab.fairness.bootstrap.binned_resamples` on the
    stacked rows, A's groups then B's).
    """
    codes, values = pd.factorize(np.asarray(keys), sort=True)
    k = len(values)
    stacked = np.r_[codes, codes + k]
    cells = np.r_[2 * y + d[0], 2 * y + d[1]]
    if scores is None:
        bin_of, n_bins, flat = np.zeros(len(cells), dtype=np.int64), 1, np.zeros(len(cells))
    else:
        flat = np.r_[scores[0], scores[1]]
        bin_of, n_bins = score_bins(flat, bins)
    res = binned_resamples(stacked, cells, bin_of, flat, 2 * k, n_bins, n_boot, seed,
                           units=np.r_[units, units])
    split = {name: res[name].reshape(n_boot, 2, k, -1) for name in ("counts", "pos", "neg")}
    figures = _model_figures(split["counts"], split["pos"], split["neg"], attr, overall,
                             scores is not None)
    return {name: v[:, 1] - v[:, 0] for name, v in figures.items()}


def paired_pvalues(y, d, scores, sets, units, *, n_perm: int, seed: int,
                   bins: int = PERM_BINS) -> dict[str, float]:
    """The paired permutation p-value of B - A of every figure, over the pairs of seeds.

    ``d`` (and ``scores``, or None) is (2, m, n): A's and B's decisions by each of the m pairs
    of seeds on the n test images; ``sets`` lists (attribute, group of each image), the first
    also giving the overall figures; ``units`` the patient (or image) of each image, the unit
    whose outcomes under A and B are swapped, for every pair at once.
    """
    m, n = d.shape[1], len(y)
    if scores is None:
        bin_of, n_bins = np.zeros((m, 2, n), dtype=np.int64), 1
    else:  # each pair's pooled bins: a swap moves a score with its bin
        binned = [score_bins(np.r_[scores[0, i], scores[1, i]], bins) for i in range(m)]
        bin_of = np.stack([b.reshape(2, n) for b, _ in binned])
        n_bins = max(nb for _, nb in binned)
    code = (2 * y + np.swapaxes(d, 0, 1)) * n_bins + bin_of  # (m, 2, n)
    groups = [(attr, *pd.factorize(np.asarray(keys), sort=True)) for attr, keys in sets]
    units = pd.factorize(np.asarray(units))[0]

    def statistics(swap: np.ndarray) -> dict[str, np.ndarray]:
        """|mean over the pairs of B - A| of each figure under each row of ``swap``."""
        b = len(swap)
        rows = swap[:, units]  # (b, n)
        per_pair: dict[str, list] = {}
        for i in range(m):
            mine = np.stack([np.where(rows, code[i, 1], code[i, 0]),
                             np.where(rows, code[i, 0], code[i, 1])], axis=1)  # (b, 2, n)
            for j, (attr, codes, values) in enumerate(groups):
                k, n_codes = len(values), 4 * n_bins
                slot = ((np.arange(b)[:, None, None] * 2 + np.arange(2)[:, None]) * k
                        + codes) * n_codes + mine
                h = np.bincount(slot.ravel(), minlength=b * 2 * k * n_codes).reshape(
                    b, 2, k, 4, n_bins)
                counts = np.zeros((b, 2, k, 8))
                counts[..., :4] = h.sum(-1)
                figures = _model_figures(counts, h[..., 2:, :].sum(-2), h[..., :2, :].sum(-2),
                                         attr, j == 0, scores is not None)
                for name, v in figures.items():
                    scaled = on_scale(name, v)
                    per_pair.setdefault(name, []).append(scaled[:, 1] - scaled[:, 0])
        with np.errstate(invalid="ignore"):
            return {name: np.abs(np.mean(v, axis=0)) for name, v in per_pair.items()}

    observed = statistics(np.zeros((1, units.max() + 1), dtype=bool))
    if n_perm == 0:
        return dict.fromkeys(observed, np.nan)
    rng = np.random.default_rng(seed)
    step = max(1, CHUNK // (2 * n * max(1, len(groups))))
    perm: dict[str, list] = {}
    for lo in range(0, n_perm, step):
        drawn = statistics(rng.random((min(step, n_perm - lo), units.max() + 1)) < 0.5)
        for name, v in drawn.items():
            perm.setdefault(name, []).append(v)
    return {name: float(_pvalue(float(observed[name][0]), np.concatenate(perm[name])))
            for name in observed}


def _test_rows(table: pd.DataFrame, method: str, attributes: pd.DataFrame) -> pd.DataFrame:
    """One model's test decisions by ``method``, in row order, with the images' attributes."""
    rows = table[(table["split"] == "test") & (table["method"] == method)]
    return rows.sort_values("row", kind="stable").merge(attributes, on="row", how="left")


def compare_models(
    predictions: Predictions, decisions: dict, per_seed: pd.DataFrame, grid: pd.DataFrame,
    a: str, b: str, groups: Sequence[str], *, n_boot: int = 1000, n_perm: int = 0,
    level: float = 0.95, seed: int = 0, resample: str = "auto", intersect: bool = True,
    bins: int = 256,
) -> pd.DataFrame:
    """B - A of every figure and gap of the grid, per method, with the paired interval and
    the paired permutation p-value (not yet corrected: :func:`correct_together`).

    ``decisions``: recipe -> model -> postprocess's decisions table (as
    :func:`biaslab.audit.run.decide` gives them); ``per_seed`` and ``grid``: the evaluation's
    (one row per model, one per recipe); the other keywords are the ``evaluate`` section's.
    Returns one row per (method, figure): ``method``, ``figure``, ``a_model``, ``b_model``,
    ``A``, ``B`` (the grid's), ``difference`` (B - A), ``difference_lo``, ``difference_hi``
    (and ``difference_seed_sd`` with seeds), ``p``, ``pairs``, ``patients`` (the units
    resampled and swapped), ``images``, ``note`` (why a row is empty). A method that neither
    model could apply (grid.csv says why) has no rows.
    """
    pairs = pair_models(predictions, a, b)
    attributes = predictions.attributes.drop(columns="split")
    unit = resample_unit(predictions.attributes, resample)
    sets = attribute_sets(list(groups), intersect)
    figures = [f for f in [*OVERALL, *(f"{SEP.join(c)}.{g}" for c in sets for g in MODEL_GAPS)]
               if f in grid.columns]
    rows, per_pair = [], []
    for method in dict.fromkeys(grid.loc[grid["scheme"].isin([a, b]), "method"]):
        tables = [(_test_rows(decisions[a][ma], method, attributes),
                   _test_rows(decisions[b][mb], method, attributes)) for ma, mb in pairs]
        lacking = [name for name, k in ((a, 0), (b, 1)) if any(t[k].empty for t in tables)]
        base = {"method": method, "a_model": a, "b_model": b, "pairs": len(pairs)}
        if len(lacking) == 2:  # neither model has it: grid.csv says why, nothing to compare
            continue
        if lacking:
            rows += [base | {"figure": f, "note": f"{method} not applicable for "
                                                   f"{' and '.join(lacking)}"} for f in figures]
            continue
        first = tables[0][0]
        units = (patient_units(first) if unit == "patient" else first["row"]).to_numpy()
        keys = [(SEP.join(c), group_keys(first, c, what="evaluate.groups")) for c in sets]
        keys = [(attr, k) for attr, k in keys if len(set(k)) > 1]
        y = first["label"].to_numpy().astype(np.int64)
        d = np.stack([np.stack([t[k]["decision"].to_numpy() for t in tables]) for k in (0, 1)])
        scored = all("score" in t[k].columns for t in tables for k in (0, 1))
        s = (np.stack([np.stack([t[k]["score"].to_numpy(float) for t in tables])
                       for k in (0, 1)]) if scored else None)
        for i, (ma, mb) in enumerate(pairs):
            boot: dict[str, np.ndarray] = {}
            for j, (attr, k) in enumerate(keys):
                boot |= paired_bootstrap(y, d[:, i].astype(np.int64),
                                         None if s is None else s[:, i], k, units, attr=attr,
                                         overall=j == 0, n_boot=n_boot, seed=seed, bins=bins)
            per_pair.append(base | {"pair": i} | _pair_differences(
                per_seed, a, ma, b, mb, method, figures, boot, level))
        pvalues = paired_pvalues(y, d.astype(np.int64), s, keys, units, n_perm=n_perm,
                                 seed=seed)
        rows += [base | {"figure": f, "p": pvalues.get(f, np.nan),
                         "patients": len(np.unique(units)), "images": len(y)} for f in figures]
    return _assemble(pd.DataFrame(rows), per_pair, grid, a, b, level)


def _pair_differences(per_seed, a, ma, b, mb, method, figures, boot, level) -> dict:
    """One pair's B - A of each figure (``FIGURE|diff``) with its paired bootstrap interval."""
    def point(recipe, model):
        row = per_seed[(per_seed["scheme"] == recipe) & (per_seed["method"] == method)
                       & (per_seed["seed"].astype(str) == str(model))]
        return row.iloc[0]

    pa, pb = point(a, ma), point(b, mb)
    out = {}
    for f in figures:
        diff = float(pb[f]) - float(pa[f])
        draws = boot.get(f, np.empty(0))
        draws = draws[np.isfinite(draws)]
        lo, hi = (np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
                  if np.isfinite(diff) and len(draws) else (np.nan, np.nan))
        out |= {f + DIFF: diff, f + DIFF + "_lo": lo, f + DIFF + "_hi": hi}
    return out


def _assemble(rows: pd.DataFrame, per_pair: list[dict], grid: pd.DataFrame, a: str, b: str,
              level: float) -> pd.DataFrame:
    """The table: the grid's A and B, the pairs' differences combined, p NaN where the
    difference is missing."""
    if rows.empty:  # no method either model applied: nothing to compare (grid.csv says why)
        rows = pd.DataFrame(columns=["method", "figure", "a_model", "b_model", "pairs"])
    for name in ("p", "patients", "images", "note"):
        if name not in rows:
            rows[name] = np.nan if name != "note" else ""
    rows["note"] = rows["note"].fillna("")
    at = grid.set_index(["scheme", "method"])
    rows["A"] = [at.loc[(a, m), f] if (a, m) in at.index else np.nan
                 for m, f in zip(rows["method"], rows["figure"], strict=True)]
    rows["B"] = [at.loc[(b, m), f] if (b, m) in at.index else np.nan
                 for m, f in zip(rows["method"], rows["figure"], strict=True)]
    names = ["difference", "difference_lo", "difference_hi", "difference_seed_sd"]
    rows[names] = np.nan
    if per_pair:
        combined = combine(pd.DataFrame(per_pair), by=("method",), seed_col="pair",
                           level=level).set_index("method")
        for i, (m, f) in enumerate(zip(rows["method"], rows["figure"], strict=True)):
            if m in combined.index:
                rows.loc[i, names] = [combined.loc[m, f + DIFF + end] for end in
                                      ("", "_lo", "_hi", "_seed_sd")]
    missing = rows["difference"].isna() & (rows["note"] == "")
    rows.loc[missing, "note"] = [
        f"missing for {' and '.join(x for x, v in ((a, va), (b, vb)) if pd.isna(v)) or 'a seed'}"
        " (too few cases: grid.csv's insufficient)"
        for va, vb in zip(rows.loc[missing, "A"], rows.loc[missing, "B"], strict=True)]
    rows.loc[rows["difference"].isna(), "p"] = np.nan
    if (rows["pairs"] == 1).all():
        rows = rows.drop(columns="difference_seed_sd")
    order = ["method", "figure", "a_model", "b_model", "A", "B", *[
        c for c in names if c in rows], "p", "pairs", "patients", "images", "note"]
    return rows[order]


def correct_together(grid: pd.DataFrame, table: pd.DataFrame, *, correction: str = "holm",
                     level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The grid's p-values and the comparison's corrected as one family.

    Returns the grid with its ``_p_adj`` columns recomputed over the family (the grid's ``_p``
    values and ``table``'s ``p``, :func:`biaslab.fairness.corrections.adjust`), and ``table``
    with ``p_adj``, ``fairer`` (for a gap: the name of the model whose gap is closer to its ideal,
    :func:`biaslab.fairness.costs.fairness_cost`; "" when equal or missing) and ``tells``
    (the interval excludes 0 and ``p_adj`` < 1 - ``level``; the interval alone when no
    permutation test ran).
    """
    columns = [c for c in grid.columns if c.endswith("_p")]
    own = grid[columns].to_numpy(dtype=float)
    family = adjust(np.r_[own.ravel(), table["p"].to_numpy(dtype=float)], correction)
    grid = grid.copy()
    for j, c in enumerate(columns):
        grid[f"{c}_adj"] = family[:own.size].reshape(own.shape)[:, j]
    out = table.copy()
    out.insert(out.columns.get_loc("p") + 1, "p_adj", family[own.size:])
    out["fairer"] = [_fairer(r.figure, r.A, r.B, r.a_model, r.b_model) for r in out.itertuples()]
    excludes = (out["difference_lo"] > 0) | (out["difference_hi"] < 0)
    tested = out["p_adj"].notna()
    out["tells"] = excludes & (~tested | (out["p_adj"] < 1 - level))
    return grid, out


def _fairer(figure: str, a: float, b: float, name_a: str, name_b: str) -> str:
    """The name of the model whose gap is closer to its ideal; "" for a figure or a tie."""
    name = figure.rsplit(".", 1)[-1]
    if "." not in figure or pd.isna(a) or pd.isna(b):
        return ""
    cost_a, cost_b = fairness_cost(pd.Series([a, b]), name)
    return "" if np.isclose(cost_a, cost_b) else (name_b if cost_b < cost_a else name_a)

