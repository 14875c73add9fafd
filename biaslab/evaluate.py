"""Evaluate test decisions of every (scheme, method): metrics, gaps, flip rate, shifted test set,
and the (scheme, method) recommended on the validation split.

The shifted test set is the seed experiment's check for a shortcut: on the same test images,
draw S ~ Bernoulli(shift_p) independently of the label and read the decision the model makes
with S forced to that value (``decision_s0`` / ``decision_s1``). A model that learnt the image
keeps its accuracy; a model that learnt S loses it.

Choosing a pair on the test split and reporting its test figures would flatter it (the best of
several noisy figures is biased upwards). So the Pareto front and the recommended pair are
chosen on the validation decisions, and only reported on test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from biaslab.columns import require_columns
from biaslab.groups import SEP, group_keys, patient_units
from biaslab.metrics import group_report
from biaslab.significance import adjust, permutation_pvalues

HEADLINE = ("accuracy", "balanced_accuracy", "auc", "flip_rate")


def shifted_view(test: pd.DataFrame, shift_p: float, seed: int) -> pd.DataFrame:
    """The test rows under S ~ Bernoulli(shift_p) drawn independently of the label.

    ``test`` needs ``row``, ``decision_s0`` and ``decision_s1``; the result has ``s`` and
    ``decision`` replaced by the drawn S and the decision the model takes under it.
    """
    # one uniform per image, indexed by its row: the draw does not depend on the table's order
    rows = test["row"].to_numpy()
    uniform = np.random.default_rng(seed).random(int(rows.max()) + 1 if len(rows) else 0)
    s = (uniform[rows] < shift_p).astype(np.int8)
    out = test.copy()
    out["s"] = s
    out["decision"] = np.where(s == 1, test["decision_s1"], test["decision_s0"]).astype(np.int8)
    return out


def attribute_sets(groups: list[str], intersect: bool) -> list[list[str]]:
    """Each attribute alone and, with ``intersect`` and two or more, all of them intersected."""
    return [[g] for g in groups] + ([list(groups)] if intersect and len(groups) > 1 else [])


def _evaluate_one(test: pd.DataFrame, groups: list[list[str]], n_boot, level, seed, prefix: str,
                  bins: int = 256, resample: str = "image", min_cell: int = 5, n_perm: int = 0):
    """Metrics of one set of test decisions: a flat dict for the grid and a per-group table."""
    flip = None
    if "decision_s0" in test.columns:
        flip = (test["decision_s0"] != test["decision_s1"]).to_numpy()
    scores = test["score"].to_numpy() if "score" in test.columns else None
    patients = patient_units(test).to_numpy() if "patient_id" in test.columns else None
    flat, tables = {}, []
    for i, cols in enumerate(groups):
        attr = SEP.join(cols)
        keys = group_keys(test, cols, what="evaluate.groups")
        per_group, between = group_report(
            test["label"], test["decision"], keys,
            flip=flip, scores=scores, patients=patients, resample=resample, n_boot=n_boot,
            level=level, seed=seed, name=attr, bins=bins, labelled=True, min_cell=min_cell,
        )
        if i == 0:  # overall figures do not depend on the attribute: take them once
            overall = per_group.iloc[-1]
            flat[f"{prefix}n"] = int(overall["n"])
            flat[f"{prefix}patients"] = int(overall["patients"])
            for m in [h for h in HEADLINE if h != "flip_rate" or flip is not None]:
                for suffix in ("", "_lo", "_hi"):
                    flat[f"{prefix}{m}{suffix}"] = float(overall[m + suffix])
            flat[f"{prefix}insufficient"] = overall["insufficient"]
            flat[f"{prefix}undefined"] = overall["undefined"]
        pvalues = {}
        if n_perm and len(set(keys)) >= 2:  # the same units as the bootstrap's
            pvalues = permutation_pvalues(
                test["label"], test["decision"], keys, n_perm=n_perm, seed=seed, scores=scores,
                patients=patients if resample == "patient" else None)
        for row in between.itertuples():
            flat[f"{prefix}{attr}.{row.metric}"] = row.value
            flat[f"{prefix}{attr}.{row.metric}_lo"] = row.lo
            flat[f"{prefix}{attr}.{row.metric}_hi"] = row.hi
            # the base-rate gaps test the labels, not the model: no p-value; a gap reported
            # missing has none either, and is not counted in the family
            if pvalues and not row.metric.startswith("base_"):
                flat[f"{prefix}{attr}.{row.metric}_p"] = (
                    np.nan if np.isnan(row.value) else pvalues[row.metric])
        flat[f"{prefix}{attr}.groups"] = between["groups"].iloc[0]
        flat[f"{prefix}{attr}.insufficient"], flat[f"{prefix}{attr}.undefined"] = _gap_notes(
            between)
        tables.append(per_group.assign(attribute=attr).query("group != 'all'"))
    tables.append(per_group.query("group == 'all'").assign(attribute="all"))
    return flat, pd.concat(tables, ignore_index=True)


def _gap_notes(between: pd.DataFrame) -> tuple[str, str]:
    """One attribute's gaps, for one grid cell each: the missing ones with why, gaps with the
    same reason together ('equal_opportunity_difference, auc_gap: s=0 has 4 positives (<
    evaluate.min_cell = 5)'), and those undefined in some resamples ('disparate_impact 0.4%')."""
    short = between[between["insufficient"] != ""].groupby("insufficient", sort=False)["metric"]
    missing = "; ".join(f"{', '.join(gaps)}: {why}" for why, gaps in short)
    undefined = ", ".join(f"{r.metric} {100 * r.undefined:.3g}%"
                          for r in between.itertuples() if r.undefined > 0)
    return missing, undefined


def resample_unit(attributes: pd.DataFrame, resample: str) -> str:
    """What the bootstrap resamples, ``patient`` or ``image``, for ``evaluate.resample``.

    ``auto`` is ``patient`` when the index has patient ids (nih, csv, folder sources with a
    patient column), else ``image`` (digits: one image per writer sample).
    """
    if resample not in ("auto", "patient", "image"):
        raise ValueError(f"evaluate.resample = {resample!r}; expected one of auto, patient, "
                         "image")
    has_ids = "patient_id" in attributes.columns and attributes["patient_id"].notna().any()
    if resample == "patient" and not has_ids:
        raise ValueError("evaluate.resample = 'patient' needs patient ids (the index's "
                         "patient_id column), and this data has none; use auto or image")
    return resample if resample != "auto" else ("patient" if has_ids else "image")


def evaluate_decisions(
    decisions: dict[str, pd.DataFrame],
    attributes: pd.DataFrame,
    groups: list[str],
    *,
    shift_p: float = 0.5,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_group_size: int = 1,
    intersect: bool = True,
    bins: int = 256,
    pareto_gap: str = "disparate_impact",
    resample: str = "auto",
    min_cell: int = 5,
    max_accuracy_loss: float = 0.02,
    n_perm: int = 0,
    correction: str = "holm",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate the test decisions of each scheme.

    Parameters
    ----------
    decisions : dict of scheme -> DataFrame
        The ``decisions`` artifact of each scheme (``row``, ``split``, ``method``, ``threshold``,
        ``decision`` and, with an injected bias, ``decision_s0``, ``decision_s1``).
    attributes : DataFrame
        ``row``, ``label``, the ``groups`` columns (e.g. ``s``, ``sex``) and, when known,
        ``patient_id`` of every image (a null id: the image is a patient of its own).
    groups : list of str
        Attributes to evaluate between groups, each on its own and, with ``intersect``,
        intersected (attribute ``s&sex``, groups ``s=1&sex=F``, see
        :func:`biaslab.groups.group_keys`).
    bins : int
        Score bins of the bootstrap's AUC and calibration error.
    pareto_gap : str
        The gap of the first attribute traded against balanced accuracy on the validation
        split, for the ``pareto`` and ``recommended`` columns (see :func:`recommend`).
    resample : {"auto", "patient", "image"}
        What the bootstrap resamples (see :func:`resample_unit`).
    min_cell : int
        A figure computed from fewer positives, negatives, ... of a group is missing, with
        the reason (see :func:`biaslab.metrics.group_report`).
    n_perm, correction : int, {"holm", "bh"}
        Permutations behind each gap's p-value (``ATTR.GAP_p``; 0: none), and the correction
        of all the p-values of the run together (``ATTR.GAP_p_adj``), see
        :mod:`biaslab.significance`. The base-rate gaps test the labels, not the model: they
        get no p-value.
    max_accuracy_loss : float
        The recommended pair may lose this much validation balanced accuracy against the best
        pair, for a lower fairness cost (see :func:`recommend`).

    Returns
    -------
    grid : DataFrame
        One row per (scheme, method): test metrics with ``_lo``/``_hi`` intervals, images
        ``n`` and ``patients``, gaps per attribute (``ATTR.METRIC``), group sizes
        (``ATTR.groups``), the missing figures with why and those undefined in some resamples
        (``insufficient``, ``undefined``, ``ATTR.insufficient``, ``ATTR.undefined``) and, with
        an injected bias,
        the same on the shifted test set (prefix ``shifted.``), ``warning`` and
        ``degenerate`` (see :func:`degenerate_reasons`), ``fairness_cost`` (of the test gap,
        :func:`fairness_cost`), ``val.balanced_accuracy`` and ``val.fairness_cost`` (the same
        on the validation decisions, no intervals), ``pareto`` (on the validation Pareto front
        of balanced accuracy against the cost) and ``recommended`` (the one pair
        :func:`recommend` picks on validation; none when validation says nothing).
    per_group : DataFrame
        One row per (scheme, method, set, attribute, group): images ``n``, ``patients``,
        ``positives``, ``negatives``, every per-group metric with its interval,
        ``insufficient`` and ``undefined`` (see :func:`biaslab.metrics.group_report`).
    """
    require_columns(attributes, groups, what="evaluate.groups")
    unit = resample_unit(attributes, resample)
    grid_rows, group_tables = [], []
    for scheme, table in decisions.items():
        test = table[table["split"] == "test"].merge(attributes, on="row", how="left")
        val = table[table["split"] == "val"].merge(attributes, on="row", how="left")
        # one row per image: the table repeats each test image once per method
        _check_group_sizes(test.drop_duplicates("row"), attributes, groups, min_group_size, scheme)
        for method, part in test.groupby("method", sort=False):
            row = {"scheme": scheme, "method": method}
            sets = [("test", part, "")]
            if "decision_s0" in part.columns and "s" in part.columns:
                sets.append(("shifted", shifted_view(part, shift_p, seed), "shifted."))
            for name, data, prefix in sets:
                attrs = attribute_sets(groups, intersect) if name == "test" else [["s"]]
                if name == "shifted":  # the scores were not read under the drawn S
                    data = data.drop(columns="score", errors="ignore")
                flat, per_group = _evaluate_one(data, attrs, n_boot, level, seed, prefix, bins,
                                                unit, min_cell, n_perm)
                row.update(flat)
                group_tables.append(per_group.assign(scheme=scheme, method=method, set=name))
            row["warning"] = degenerate_reasons(part, row)
            row["degenerate"] = bool(row["warning"])
            val_part = val[val["method"] == method]
            row["val.balanced_accuracy"], val_gap = _val_figures(val_part, groups[0],
                                                                 pareto_gap, min_cell)
            row["val.fairness_cost"] = float(fairness_cost(pd.Series([val_gap]), pareto_gap)[0])
            grid_rows.append(row)
    per_group = pd.concat(group_tables, ignore_index=True)
    lead = ["scheme", "method", "set", "attribute", "group"]
    grid = pd.DataFrame(grid_rows)
    # every gap of the run is one family: corrected together, whatever scheme, method or set
    p_cols = [c for c in grid.columns if c.endswith("_p")]
    if p_cols:
        family = grid[p_cols].to_numpy(dtype=float)
        adjusted = adjust(family.ravel(), correction).reshape(family.shape)
        grid = pd.concat([grid, pd.DataFrame(adjusted, columns=[c + "_adj" for c in p_cols],
                                             index=grid.index)], axis=1)
    grid["fairness_cost"] = fairness_cost(grid[f"{groups[0]}.{pareto_gap}"], pareto_gap)
    # chosen on validation, reported on test: see the module's docstring
    grid["pareto"] = pareto_front(grid["val.balanced_accuracy"], grid["val.fairness_cost"])
    grid["recommended"] = recommend(grid["val.balanced_accuracy"], grid["val.fairness_cost"],
                                    max_accuracy_loss)
    return grid, per_group[lead + [c for c in per_group if c not in lead]]


def _val_figures(val: pd.DataFrame, attr: str, gap: str, min_cell: int) -> tuple[float, float]:
    """Balanced accuracy and the ``gap`` of ``attr`` on one pair's validation decisions, points
    only; NaN when validation cannot tell (no rows, a single group, too few cases)."""
    if val[attr].nunique(dropna=False) < 2:
        return np.nan, np.nan
    scores = val["score"].to_numpy() if "score" in val.columns else None
    with warnings.catch_warnings():
        # the test figures already warn of undefined rates; here a NaN only keeps a pair
        # off the front, and val.balanced_accuracy / val.fairness_cost show it
        warnings.simplefilter("ignore")
        per_group, between = group_report(
            val["label"], val["decision"], group_keys(val, [attr], what="evaluate.groups"),
            scores=scores, n_boot=0, name=attr, labelled=True, min_cell=min_cell)
    return (float(per_group["balanced_accuracy"].iloc[-1]),
            float(between.set_index("metric").loc[gap, "value"]))


def degenerate_reasons(test: pd.DataFrame, figures: dict) -> str:
    """Why one (scheme, method)'s test decisions tell nothing about the image, or "".

    A model is degenerate on the test split when its decisions are constant, its scores are
    constant, or the bootstrap interval of its AUC contains 0.5 (it does not tell the classes
    apart better than chance). Its gaps then compare nothing: DI is 1 or 0/0 whatever the
    groups. ``figures`` holds ``auc``, ``auc_lo``, ``auc_hi`` (absent or NaN: not checked).
    """
    reasons = []
    decisions = test["decision"]
    if decisions.nunique() == 1:
        reasons.append(f"constant decisions on the test split (all {decisions.iloc[0]})")
    if "score" in test.columns and test["score"].nunique() == 1:
        reasons.append(f"constant scores on the test split ({test['score'].iloc[0]:.4g})")
    auc, lo, hi = (figures.get(k, np.nan) for k in ("auc", "auc_lo", "auc_hi"))
    if lo <= 0.5 <= hi:  # False when the interval is NaN (no scores, one class, n_boot = 0)
        reasons.append(f"AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] does not exclude chance (0.5)")
    return "; ".join(reasons)


def add_training_flags(grid: pd.DataFrame, flags: dict[str, str | None]) -> pd.DataFrame:
    """``grid`` with each scheme's training flag (train's check: a model that learnt nothing,
    e.g. the same validation accuracy every epoch) added to the ``warning`` of its rows."""
    grid = grid.copy()
    for scheme, reason in flags.items():
        if not reason:
            continue
        rows = grid["scheme"] == scheme
        text = f"training: {reason}"
        grid.loc[rows, "warning"] = [f"{w}; {text}" if w else text
                                     for w in grid.loc[rows, "warning"]]
        grid.loc[rows, "degenerate"] = True
    return grid


def add_not_applicable(grid: pd.DataFrame, thresholds: dict[str, dict]) -> pd.DataFrame:
    """``grid`` with a row for each (scheme, method) that postprocess could not fit.

    ``thresholds`` is scheme -> its ``metrics/thresholds/SCHEME.json``, where a skipped method
    reads ``{"not_applicable": REASON}`` (e.g. a group with one class in validation). Its row
    has every figure missing, ``warning`` "not applicable: REASON", is on no Pareto front and
    is never recommended; rows keep the order of the schemes and of each scheme's methods.
    """
    rows = [{"scheme": scheme, "method": method, "degenerate": False, "pareto": False,
             "recommended": False, "warning": f"not applicable: {p['not_applicable']}"}
            for scheme, fitted in thresholds.items() for method, p in fitted.items()
            if "not_applicable" in p]
    if not rows:
        return grid
    order = {(s, m): i for i, (s, m) in enumerate(
        (s, m) for s, fitted in thresholds.items() for m in fitted)}
    grid = pd.concat([grid, pd.DataFrame(rows)], ignore_index=True)
    pairs = zip(grid["scheme"], grid["method"], strict=True)
    rank = [order.get(pair, len(order)) for pair in pairs]
    return grid.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)


def summary_line(grid: pd.DataFrame, gap: str) -> str:
    """The evaluate stage's summary: the pair recommended on validation, with its test figures
    (balanced accuracy and the Pareto gap, column ``gap`` of ``grid``). NaN-safe."""
    front = int(grid["pareto"].sum())
    picked = grid[grid["recommended"].eq(True)]
    if len(picked):
        best = picked.iloc[0]
        text = (f"recommended {best['scheme']}/{best['method']} (chosen on validation): test "
                f"balanced accuracy {best['balanced_accuracy']:.3f}, {gap} {best[gap]:.3f}")
    else:
        text = "no pair recommended (balanced accuracy or fairness cost undefined on validation)"
    if grid["balanced_accuracy"].isna().all():
        text += "; balanced accuracy undefined for every pair (a class absent from test)"
    degenerate = int(grid["degenerate"].sum()) if "degenerate" in grid.columns else 0
    return (f"{len(grid)} (scheme, method) pairs, {front} on the validation Pareto front; "
            f"{text}" + (f"; {degenerate} degenerate" if degenerate else ""))


def fairness_cost(gap: pd.Series, metric: str) -> np.ndarray:
    """How far a gap is from parity, the same either side of it: |log DI| for disparate
    impact (DI 0.8 and its mirror 1.25 cost the same; DI 0 or inf cost inf), |value| for a
    difference."""
    values = gap.to_numpy(dtype=float)
    if metric != "disparate_impact":
        return np.abs(values)
    with np.errstate(divide="ignore"):
        return np.abs(np.log(values))


def recommend(score, cost, max_loss: float) -> np.ndarray:
    """True for one row: among the Pareto front of ``score`` against ``cost`` (see
    :func:`pareto_front`), the lowest cost among the rows whose score is at least the best
    score minus ``max_loss``; ties go to the first row. All False when no row has both figures.
    """
    score, cost = np.asarray(score, dtype=float), np.asarray(cost, dtype=float)
    front = pareto_front(score, cost)
    out = np.zeros(len(score), dtype=bool)
    if front.any():
        # a hair of slack: 0.90 - 0.02 must admit 0.88 despite floating point
        near = front & (score >= score[front].max() - max_loss - 1e-12)
        out[np.flatnonzero(near)[np.argmin(cost[near])]] = True
    return out


def pareto_front(score, cost) -> np.ndarray:
    """True for the rows no other row dominates (score >= and cost <=, one of them strictly).

    Rows with a NaN score or cost are never on the front.
    """
    score, cost = np.asarray(score, dtype=float), np.asarray(cost, dtype=float)
    ok = ~(np.isnan(score) | np.isnan(cost))
    better_eq = (score[None, :] >= score[:, None]) & (cost[None, :] <= cost[:, None])
    strictly = (score[None, :] > score[:, None]) | (cost[None, :] < cost[:, None])
    dominated = (better_eq & strictly & ok[None, :]).any(1)
    return ok & ~dominated


def _check_group_sizes(
    test: pd.DataFrame, attributes: pd.DataFrame, groups: list[str], min_size: int, scheme: str
):
    for attr in groups:
        # count every group of the data, so one with no test row at all is not silently dropped
        sizes = test[attr].value_counts(dropna=False)
        sizes = sizes.reindex(attributes[attr].unique(), fill_value=0)
        small = sizes[sizes < min_size]
        if len(small):
            raise ValueError(
                f"evaluate.groups: in the test split of scheme {scheme!r}, group(s) "
                f"{ {k: int(v) for k, v in small.items()} } of {attr!r} have fewer than "
                f"evaluate.min_group_size={min_size} rows"
            )


def headline(grid: pd.DataFrame, groups: list[str]) -> dict:
    """The nested dict for metrics/fairness.json: scheme -> method -> headline figures.

    Nine figures per pair, so `dvc exp show` stays readable; grid.csv holds every figure with
    its interval: balanced accuracy, flip rate, shifted accuracy, for the first attribute of
    ``groups`` disparate impact, its excess over the labels' own (see
    :func:`biaslab.metrics.gaps`), equalized-odds difference and worst-group balanced
    accuracy, ``degenerate`` (true: read the ``warning`` column of grid.csv before the gaps)
    and ``recommended`` (the pair chosen on validation, see :func:`recommend`).
    """
    out: dict = {}
    first = groups[0]
    keys = ["balanced_accuracy", "flip_rate", "shifted.accuracy", f"{first}.disparate_impact",
            f"{first}.excess_disparate_impact", f"{first}.equalized_odds_difference",
            f"{first}.worst_group_balanced_accuracy", "degenerate", "recommended"]
    for row in grid.to_dict("records"):
        figures = {}
        for key in keys:
            if key in row:
                value = row[key]
                if isinstance(value, bool | np.bool_):
                    figures[key] = bool(value)
                else:
                    figures[key] = None if pd.isna(value) else round(float(value), 4)
        out.setdefault(row["scheme"], {})[row["method"]] = figures
    return out
