"""Evaluate test decisions of every (scheme, method): metrics, gaps, flip rate, shifted test set,
each per training seed and averaged over the seeds: the grid.

The shifted test set is the seed experiment's check for a shortcut: on the same test images,
draw S ~ Bernoulli(shift_p) independently of the label and read the decision the model makes
with S forced to that value (``decision_s0`` / ``decision_s1``). A model that learnt the image
keeps its accuracy; a model that learnt S loses it.

The grid also holds what the choice of a pair reads, each pair's figures on the validation
decisions (the pair is chosen on validation and only reported on test, see
:mod:`biaslab.fairness.recommend`), and evaluate's own flag of a degenerate model (see
:mod:`biaslab.fairness.flags`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.data.group_keys import SEP, group_keys, patient_units
from biaslab.fairness.across_seeds import combine
from biaslab.fairness.bootstrap import SharedDraws
from biaslab.fairness.corrections import adjust
from biaslab.fairness.costs import DEFAULT_GAP, ERROR_RATE_GAPS, fairness_cost
from biaslab.fairness.flags import degenerate_reasons
from biaslab.fairness.metrics import group_report
from biaslab.fairness.recommend import choose
from biaslab.fairness.significance import model_pvalues

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
                  bins: int = 256, resample: str = "image", min_cell: int = 5,
                  shared: SharedDraws | None = None):
    """Metrics of one set of test decisions: a flat dict for the grid and a per-group table;
    ``shared``: the patient draws of the sets on the same images (see
    :func:`biaslab.fairness.metrics.group_report`)."""
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
            shared=shared,
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
        for row in between.itertuples():
            flat[f"{prefix}{attr}.{row.metric}"] = row.value
            flat[f"{prefix}{attr}.{row.metric}_lo"] = row.lo
            flat[f"{prefix}{attr}.{row.metric}_hi"] = row.hi
        flat[f"{prefix}{attr}.groups"] = between["groups"].iloc[0]
        flat[f"{prefix}{attr}.insufficient"], flat[f"{prefix}{attr}.undefined"] = _gap_notes(
            between)
        tables.append(per_group.assign(attribute=attr).query("group != 'all'"))
    tables.append(per_group.query("group == 'all'").assign(attribute="all"))
    return flat, pd.concat(tables, ignore_index=True)


def _pvalues(sets: dict[tuple, list[pd.DataFrame]], groups: list[str], intersect: bool,
             n_perm: int, seed: int, resample: str) -> dict[tuple, dict[str, float]]:
    """The permutation p-value of each gap (``PREFIX ATTR.GAP_p``) of every (scheme, method).

    ``sets`` maps (scheme, method, set) to the same test images, in the same order, as decided
    by each training seed's model: one relabelling of the groups serves every seed, and the
    statistic is the mean over seeds of each seed's (see
    :func:`biaslab.fairness.significance.permutation_pvalues`). The pairs tested on the same
    images share their relabellings too (:func:`biaslab.fairness.significance.model_pvalues`):
    the draws are made once for all of them. The base-rate gaps test the labels, not the
    model: no p-value.
    """
    batches: dict[tuple, list[tuple]] = {}
    for key, parts in sets.items():
        first = parts[0]
        same = (key[2], first["row"].to_numpy().tobytes(),
                all("score" in p.columns for p in parts))
        batches.setdefault(same, []).append(key)
    out: dict[tuple, dict[str, float]] = {}
    for (name, _, with_scores), keys in batches.items():
        first = sets[keys[0]][0]
        decisions = [np.stack([p["decision"].to_numpy() for p in sets[k]]) for k in keys]
        scores = ([np.stack([p["score"].to_numpy() for p in sets[k]]) for k in keys]
                  if with_scores else None)
        patients = (patient_units(first).to_numpy()
                    if resample == "patient" and "patient_id" in first.columns else None)
        attrs = attribute_sets(groups, intersect) if name == "test" else [["s"]]
        prefix = "" if name == "test" else f"{name}."
        for cols in attrs:
            group = group_keys(first, cols, what="evaluate.groups")
            if len(set(group)) < 2:
                continue
            found = model_pvalues(first["label"], decisions, group, n_perm=n_perm, seed=seed,
                                  scores=scores, patients=patients)
            attr = SEP.join(cols)
            for (scheme, method, _), pvalues in zip(keys, found, strict=True):
                out.setdefault((scheme, method), {}).update(
                    {f"{prefix}{attr}.{gap}_p": p for gap, p in pvalues.items()
                     if not gap.startswith("base_")})
    return out


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
    **options,
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
        :func:`biaslab.data.group_keys.group_keys`).
    bins : int
        Score bins of the bootstrap's AUC and calibration error.
    pareto_gap : str
        The gap of the first attribute whose cost (its distance from its ideal,
        :func:`biaslab.fairness.recommend.fairness_cost`) is traded against balanced accuracy
        on the validation split, for the ``pareto`` and ``recommended`` columns (see
        :func:`biaslab.fairness.recommend.recommend`). The default, the equalized-odds
        difference, is 0 for a perfect classifier whatever the groups' base rates.
    resample : {"auto", "patient", "image"}
        What the bootstrap resamples (see :func:`resample_unit`).
    min_cell : int
        A figure computed from fewer positives, negatives, ... of a group is missing, with
        the reason (see :func:`biaslab.fairness.metrics.group_report`).
    n_perm, correction : int, {"holm", "bh"}
        Permutations behind each gap's p-value (``ATTR.GAP_p``; 0: none), and the correction
        of all the p-values of the run together (``ATTR.GAP_p_adj``), see
        :mod:`biaslab.fairness.significance` and :mod:`biaslab.fairness.corrections`. The
        base-rate gaps test the labels, not the model: they get no p-value.
    max_accuracy_loss : float
        The recommended pair may lose this much validation balanced accuracy against the best
        pair, for a lower fairness cost (see :func:`biaslab.fairness.recommend.recommend`).

    Returns
    -------
    grid : DataFrame
        One row per (scheme, method): test metrics with ``_lo``/``_hi`` intervals, images
        ``n`` and ``patients``, gaps per attribute (``ATTR.METRIC``), group sizes
        (``ATTR.groups``), the missing figures with why and those undefined in some resamples
        (``insufficient``, ``undefined``, ``ATTR.insufficient``, ``ATTR.undefined``) and, with
        an injected bias, the same on the shifted test set (prefix ``shifted.``), ``warning``
        and ``degenerate`` (see :func:`biaslab.fairness.flags.degenerate_reasons`),
        ``fairness_cost`` (of the test gap, :func:`biaslab.fairness.recommend.fairness_cost`),
        ``val.balanced_accuracy``, ``val.fairness_cost`` and the first attribute's error-rate
        gaps ``val.ATTR.GAP`` (the same on the validation decisions, no intervals), ``pareto``
        (on the validation Pareto front of balanced accuracy against the cost),
        ``dominated_by`` (the pair with a higher validation balanced accuracy and no worse
        error-rate gap, :func:`biaslab.fairness.recommend.dominated_by`; "" for none) and
        ``recommended`` (the one pair :func:`biaslab.fairness.recommend.recommend` picks on
        validation, never a dominated one; none when validation says nothing).
    per_group : DataFrame
        One row per (scheme, method, set, attribute, group): images ``n``, ``patients``,
        ``positives``, ``negatives``, every per-group metric with its interval,
        ``insufficient`` and ``undefined`` (see :func:`biaslab.fairness.metrics.group_report`).
    """
    evaluation = evaluate_seeds({scheme: {0: table} for scheme, table in decisions.items()},
                                attributes, groups, **options)
    return (evaluation.grid.drop(columns="seeds"),
            evaluation.per_group.drop(columns="seed"))


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate_seeds` computes: ``grid`` (one row per scheme x method, figures
    averaged over the training seeds), ``per_seed`` (one row per scheme x method x seed) and
    ``per_group`` (one row per scheme x method x seed x set x attribute x group)."""

    grid: pd.DataFrame
    per_seed: pd.DataFrame
    per_group: pd.DataFrame


def evaluate_seeds(
    decisions: Mapping[str, Mapping[int, pd.DataFrame]],
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
    pareto_gap: str = DEFAULT_GAP,
    resample: str = "auto",
    min_cell: int = 5,
    max_accuracy_loss: float = 0.02,
    n_perm: int = 0,
    correction: str = "holm",
) -> Evaluation:
    """Evaluate the test decisions of each scheme's model trained from each seed.

    ``decisions`` is scheme -> training seed -> that model's ``decisions`` artifact; the other
    parameters are those of :func:`evaluate_decisions`. Each (scheme, method, seed) is evaluated
    on its own (``per_seed``), then its figures are averaged over the seeds, with an interval
    that adds the variance between seeds to the sampling variance
    (:func:`biaslab.fairness.across_seeds.combine`, ``grid``). With patients resampled, every
    (scheme, method, seed) on the same test images takes its resamples from one draw of the
    patients per attribute (:class:`biaslab.fairness.bootstrap.SharedDraws`). Each gap's
    p-value tests the seed-averaged gap: one relabelling of the groups serves every seed, and
    every pair tested on the same images (:func:`_pvalues`); the p-values of all gaps of
    ``grid`` are corrected together. The Pareto front and the recommended pair are chosen on
    the seed-averaged validation figures (:func:`biaslab.fairness.recommend.choose`).
    """
    require_columns(attributes, groups, what="evaluate.groups")
    unit = resample_unit(attributes, resample)
    # every (scheme, method, seed) tested on the same images shares the patient draws
    options = dict(n_boot=n_boot, level=level, seed=seed, bins=bins, resample=unit,
                   min_cell=min_cell, shared=SharedDraws())
    rows, group_tables, tested = [], [], {}
    for scheme, by_seed in decisions.items():
        for train_seed, table in by_seed.items():
            test = table[table["split"] == "test"].merge(attributes, on="row", how="left")
            val = table[table["split"] == "val"].merge(attributes, on="row", how="left")
            # one row per image: the table repeats each test image once per method
            _check_group_sizes(test.drop_duplicates("row"), attributes, groups, min_group_size,
                               scheme)
            for method, part in test.groupby("method", sort=False):
                part = part.sort_values("row", kind="stable")  # the same order for every seed
                row = {"scheme": scheme, "method": method, "seed": train_seed}
                for name, data, prefix, attrs in _sets(part, groups, intersect, shift_p, seed):
                    flat, per_group = _evaluate_one(data, attrs, prefix=prefix, **options)
                    row.update(flat)
                    group_tables.append(per_group.assign(scheme=scheme, method=method,
                                                         seed=train_seed, set=name))
                    tested.setdefault((scheme, method, name), []).append(data)
                row["warning"] = degenerate_reasons(part, row)
                row["degenerate"] = bool(row["warning"])
                row |= _val_figures(val[val["method"] == method], groups[0], pareto_gap,
                                    min_cell)
                rows.append(row)
    pvalues = _pvalues(tested, groups, intersect, n_perm, seed, unit) if n_perm else {}
    per_seed = pd.DataFrame(rows)
    grid = combine(per_seed, by=("scheme", "method"), level=level)
    grid = _with_pvalues(grid, pvalues, correction)
    grid["fairness_cost"] = fairness_cost(grid[f"{groups[0]}.{pareto_gap}"], pareto_gap)
    grid = choose(grid, max_accuracy_loss)
    per_group = pd.concat(group_tables, ignore_index=True)
    lead = ["scheme", "method", "seed", "set", "attribute", "group"]
    return Evaluation(grid, per_seed,
                      per_group[lead + [c for c in per_group if c not in lead]])


def _sets(part: pd.DataFrame, groups: list[str], intersect: bool, shift_p: float, seed: int):
    """(name, data, prefix, attribute sets) of the test set and, with an injected bias, of the
    shifted test set (compared by S only; its scores were not read under the drawn S)."""
    yield "test", part, "", attribute_sets(groups, intersect)
    if "decision_s0" in part.columns and "s" in part.columns:
        shifted = shifted_view(part, shift_p, seed).drop(columns="score", errors="ignore")
        yield "shifted", shifted, "shifted.", [["s"]]


def _with_pvalues(grid: pd.DataFrame, pvalues: dict, correction: str) -> pd.DataFrame:
    """``grid`` with each gap's p-value (``_p``; NaN where the gap itself is missing, and then
    not counted in the family) and the p-values of the whole run corrected together
    (``_p_adj``)."""
    if not pvalues:
        return grid
    table = pd.DataFrame([pvalues.get((s, m), {}) for s, m in zip(
        grid["scheme"], grid["method"], strict=True)], index=grid.index)
    for col in table.columns:  # a gap reported missing has no p-value
        gap = grid.get(col.removesuffix("_p"))
        if gap is not None:
            table.loc[gap.isna().to_numpy(), col] = np.nan
    family = table.to_numpy(dtype=float)
    adjusted = adjust(family.ravel(), correction).reshape(family.shape)
    table = pd.concat([table, pd.DataFrame(adjusted, index=grid.index,
                                           columns=[c + "_adj" for c in table.columns])], axis=1)
    out = grid.copy()
    for col in table.columns:
        out[col] = table[col]
    return out


def _val_figures(val: pd.DataFrame, attr: str, gap: str, min_cell: int) -> dict[str, float]:
    """What the choice of a pair reads on its validation decisions, points only:
    ``val.balanced_accuracy``, ``val.fairness_cost`` (of ``gap`` of ``attr``) and each error-rate
    gap of ``attr`` (``val.ATTR.GAP``, :data:`~biaslab.fairness.costs.ERROR_RATE_GAPS`, see
    :func:`biaslab.fairness.recommend.dominated_by`); NaN when validation cannot tell (no rows,
    a single group, too few cases)."""
    names = [f"val.{attr}.{g}" for g in ERROR_RATE_GAPS]
    if val[attr].nunique(dropna=False) < 2:
        return dict.fromkeys(["val.balanced_accuracy", "val.fairness_cost", *names], np.nan)
    scores = val["score"].to_numpy() if "score" in val.columns else None
    with warnings.catch_warnings():
        # the test figures already warn of undefined rates; here a NaN only keeps a pair
        # off the front, and val.balanced_accuracy / val.fairness_cost show it
        warnings.simplefilter("ignore")
        per_group, between = group_report(
            val["label"], val["decision"], group_keys(val, [attr], what="evaluate.groups"),
            scores=scores, n_boot=0, name=attr, labelled=True, min_cell=min_cell)
    value = between.set_index("metric")["value"].astype(float)
    return {"val.balanced_accuracy": float(per_group["balanced_accuracy"].iloc[-1]),
            "val.fairness_cost": float(fairness_cost(value[[gap]], gap)[0]),
            **{name: value[g] for name, g in zip(names, ERROR_RATE_GAPS, strict=True)}}


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
