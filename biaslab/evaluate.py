"""Evaluate test decisions of every (scheme, method): metrics, gaps, flip rate, shifted test set.

The shifted test set is the seed experiment's check for a shortcut: on the same test images,
draw S ~ Bernoulli(shift_p) independently of the label and read the decision the model makes
with S forced to that value (``decision_s0`` / ``decision_s1``). A model that learnt the image
keeps its accuracy; a model that learnt S loses it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.metrics import GAPS, group_report

HEADLINE = ("accuracy", "balanced_accuracy", "flip_rate")


def shifted_view(test: pd.DataFrame, shift_p: float, seed: int) -> pd.DataFrame:
    """The test rows under S ~ Bernoulli(shift_p) drawn independently of the label.

    ``test`` needs ``decision_s0`` and ``decision_s1``; the result has ``s`` and ``decision``
    replaced by the drawn S and the decision the model takes under it.
    """
    rng = np.random.default_rng(seed)
    s = (rng.random(len(test)) < shift_p).astype(np.int8)
    out = test.copy()
    out["s"] = s
    out["decision"] = np.where(s == 1, test["decision_s1"], test["decision_s0"]).astype(np.int8)
    return out


def _evaluate_one(test: pd.DataFrame, groups: list[str], n_boot, level, seed, prefix: str):
    """Metrics of one set of test decisions: a flat dict for the grid and a per-group table."""
    flip = None
    if "decision_s0" in test.columns:
        flip = (test["decision_s0"] != test["decision_s1"]).to_numpy()
    flat, tables = {}, []
    for i, attr in enumerate(groups):
        per_group, between = group_report(
            test["label"], test["decision"], test[attr].to_numpy(), flip=flip, n_boot=n_boot,
            level=level, seed=seed, name=attr,
        )
        if i == 0:  # overall figures do not depend on the attribute: take them once
            overall = per_group.iloc[-1]
            flat[f"{prefix}n"] = int(overall["n"])
            for m in HEADLINE if flip is not None else HEADLINE[:2]:
                for suffix in ("", "_lo", "_hi"):
                    flat[f"{prefix}{m}{suffix}"] = float(overall[m + suffix])
        for row in between.itertuples():
            flat[f"{prefix}{attr}.{row.metric}"] = row.value
            flat[f"{prefix}{attr}.{row.metric}_lo"] = row.lo
            flat[f"{prefix}{attr}.{row.metric}_hi"] = row.hi
        flat[f"{prefix}{attr}.groups"] = between["groups"].iloc[0]
        tables.append(per_group.assign(attribute=attr).query("group != 'all'"))
    tables.append(per_group.query("group == 'all'").assign(attribute="all"))
    return flat, pd.concat(tables, ignore_index=True)


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate the test decisions of each scheme.

    Parameters
    ----------
    decisions : dict of scheme -> DataFrame
        The ``decisions`` artifact of each scheme (``row``, ``split``, ``method``, ``threshold``,
        ``decision`` and, with an injected bias, ``decision_s0``, ``decision_s1``).
    attributes : DataFrame
        ``row``, ``label`` and the ``groups`` columns (e.g. ``s``, ``sex``) of every image.
    groups : list of str
        Attributes to evaluate between groups, each on its own.

    Returns
    -------
    grid : DataFrame
        One row per (scheme, method): test metrics with ``_lo``/``_hi`` intervals, gaps per
        attribute (``ATTR.METRIC``), group sizes (``ATTR.groups``) and, with an injected bias,
        the same on the shifted test set (prefix ``shifted.``).
    per_group : DataFrame
        One row per (scheme, method, set, attribute, group) with every per-group metric.
    """
    missing = [g for g in groups if g not in attributes.columns]
    if missing:
        raise ValueError(
            f"evaluate.groups: attribute(s) {missing} not found; available: "
            f"{[c for c in attributes.columns if c != 'row']}"
        )
    grid_rows, group_tables = [], []
    for scheme, table in decisions.items():
        test = table[table["split"] == "test"].merge(attributes, on="row", how="left")
        _check_group_sizes(test, groups, min_group_size, scheme)
        for method, part in test.groupby("method", sort=False):
            row = {"scheme": scheme, "method": method}
            sets = [("test", part, "")]
            if "decision_s0" in part.columns and "s" in part.columns:
                sets.append(("shifted", shifted_view(part, shift_p, seed), "shifted."))
            for name, data, prefix in sets:
                attrs = groups if name == "test" else ["s"]
                flat, per_group = _evaluate_one(data, attrs, n_boot, level, seed, prefix)
                row.update(flat)
                group_tables.append(per_group.assign(scheme=scheme, method=method, set=name))
            grid_rows.append(row)
    per_group = pd.concat(group_tables, ignore_index=True)
    lead = ["scheme", "method", "set", "attribute", "group"]
    return pd.DataFrame(grid_rows), per_group[lead + [c for c in per_group if c not in lead]]


def _check_group_sizes(test: pd.DataFrame, groups: list[str], min_size: int, scheme: str):
    for attr in groups:
        sizes = test[attr].value_counts(dropna=False)
        small = sizes[sizes < min_size]
        if len(small):
            raise ValueError(
                f"evaluate.groups: in the test split of scheme {scheme!r}, group(s) "
                f"{dict(small)} of {attr!r} have fewer than evaluate.min_group_size={min_size} rows"
            )


def headline(grid: pd.DataFrame, groups: list[str]) -> dict:
    """The nested dict for metrics/fairness.json: scheme -> method -> headline figures."""
    out: dict = {}
    keys = [*HEADLINE, *[f"{a}.{m}" for a in groups for m in GAPS], "shifted.accuracy",
            "shifted.balanced_accuracy"]
    for row in grid.to_dict("records"):
        figures = {}
        for key in keys:
            if key in row:
                value = row[key]
                figures[key] = None if pd.isna(value) else round(float(value), 4)
        out.setdefault(row["scheme"], {})[row["method"]] = figures
    return out
