"""The data audit a careful student does first: who is in the data, with which labels, where.

- univariate: counts and shares of the label and of every attribute, with imbalance ratios;
- bivariate: label prevalence per group and per intersection of two attributes, overall and
  per split, with Wilson intervals, so a label that depends on a group (the door a shortcut
  walks through) is visible before training;
- balance: how far each split's shares and prevalences are from the whole;
- Simpson's paradox: an association between an attribute and the label that changes sign or
  vanishes within the strata of another attribute;
- warnings for groups too small to evaluate;
- the images prepare left out (``rejected.csv``) counted by kind, duplicates first: what the
  index does not show.
"""

from __future__ import annotations

import re
from statistics import NormalDist

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.data.group_keys import MISSING, SEP, group_keys


def wilson(k: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion k/n (NaN where n = 0)."""
    # the standard library's normal quantile: importing scipy.stats costs seconds
    z = NormalDist().inv_cdf(0.5 + level / 2)
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def prevalence_table(
    table: pd.DataFrame, attributes: list[str], level: float = 0.95
) -> pd.DataFrame:
    """Label prevalence per (split, attribute, group), with ``all`` rows for the whole data.

    Columns: ``split`` (train/val/test/all), ``attribute``, ``group``, ``n``, ``positives``,
    ``prevalence``, ``prevalence_lo``, ``prevalence_hi``, ``share`` (of the split's rows).
    """
    frames = []
    for split, part in [("all", table), *table.groupby("split", sort=True)]:
        for attr in ["all", *attributes]:
            keys = pd.Series("all", index=part.index) if attr == "all" else _groups(part, [attr])
            agg = part.groupby(keys, sort=True)["label"].agg(["size", "sum"])
            frames.append(pd.DataFrame({
                "split": split, "attribute": attr, "group": agg.index.astype(str),
                "n": agg["size"].to_numpy(), "positives": agg["sum"].to_numpy(),
            }))
    out = pd.concat(frames, ignore_index=True)
    out["prevalence"] = out["positives"] / out["n"]
    out["prevalence_lo"], out["prevalence_hi"] = wilson(out["positives"], out["n"], level)
    totals = out[out["attribute"] == "all"].set_index("split")["n"]
    out["share"] = out["n"] / out["split"].map(totals)
    return out


def audit_summary(prevalence: pd.DataFrame, min_group_size: int) -> dict:
    """Headline audit figures and warnings for groups too small to evaluate."""
    whole = prevalence[prevalence["split"] == "all"]
    overall = whole[whole["attribute"] == "all"].iloc[0]
    splits = prevalence[prevalence["attribute"] == "all"].set_index("split")["n"]
    summary = {
        "n": int(overall["n"]),
        "prevalence": round(float(overall["prevalence"]), 4),
        "splits": {k: int(v) for k, v in splits.items() if k != "all"},
        "groups": {},
        "warnings": [],
    }
    for row in whole[whole["attribute"] != "all"].itertuples():
        summary["groups"].setdefault(row.attribute, {})[row.group] = {
            "n": int(row.n), "prevalence": round(float(row.prevalence), 4)
        }
    # every group of the data in every split: a group with no row in a split has no line in
    # ``prevalence`` for it, and is the smallest group of all
    per_split = prevalence[prevalence["attribute"] != "all"].set_index(
        ["split", "attribute", "group"])["n"]
    every = pd.MultiIndex.from_tuples(
        [(split, a, g) for split in prevalence["split"].unique()
         for a, g in zip(whole["attribute"], whole["group"], strict=True) if a != "all"],
        names=per_split.index.names)
    sizes = per_split.reindex(every, fill_value=0)
    for (split, attr, group), n in sizes[sizes < min_group_size].items():
        summary["warnings"].append(
            f"{attr}={group} has {n} rows in split {split} "
            f"(fewer than {min_group_size}): its metrics will be unreliable"
        )
    return summary


def _groups(table: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Group of each row, as the audit's tables spell it: the values alone (``F``, ``1&F``),
    since the ``attribute`` column names the attribute; a missing value is its own group,
    ``<NA>``."""
    keys = group_keys(table, columns, what="audit.attributes", named=False, missing=MISSING)
    return pd.Series(keys, index=table.index, dtype=object)


def with_intersections(table: pd.DataFrame, attributes: list[str]) -> tuple[pd.DataFrame, list]:
    """Add a column per pair of attributes (``a&b``, values ``x&y``); returns the new names."""
    pairs = [(a, b) for i, a in enumerate(attributes) for b in attributes[i + 1:]]
    extra = {SEP.join(pair): _groups(table, list(pair)) for pair in pairs}
    return table.assign(**extra), list(extra)


def univariate_table(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Counts and shares of every value of ``columns`` (the label first, then attributes).

    Columns: ``attribute``, ``group``, ``n``, ``share``, ``imbalance`` (largest / smallest
    group count of the attribute, the same on each of its rows).
    """
    frames = []
    for col in columns:
        counts = _groups(table, [col]).value_counts().sort_index()
        frames.append(pd.DataFrame({
            "attribute": col, "group": counts.index.astype(str), "n": counts.to_numpy(),
            "share": counts.to_numpy() / len(table),
            "imbalance": counts.max() / counts.min() if len(counts) else np.nan,
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["attribute", "group", "n", "share", "imbalance"])


def balance_table(prevalence: pd.DataFrame) -> pd.DataFrame:
    """Each split against the whole: differences of group share and of label prevalence.

    Columns: ``split``, ``attribute``, ``group``, ``share``, ``share_all``, ``share_diff``,
    ``prevalence``, ``prevalence_all``, ``prevalence_diff``. A group of the whole that a split
    lacks has share 0 there.
    """
    whole = prevalence[prevalence["split"] == "all"].set_index(["attribute", "group"])
    frames = []
    for split in sorted(set(prevalence["split"]) - {"all"}):
        part = prevalence[prevalence["split"] == split].set_index(["attribute", "group"])
        part = part.reindex(whole.index)
        frames.append(pd.DataFrame({
            "split": split, "share": part["share"].fillna(0.0), "share_all": whole["share"],
            "prevalence": part["prevalence"], "prevalence_all": whole["prevalence"],
        }, index=whole.index))
    if not frames:
        return pd.DataFrame(columns=["split", "attribute", "group", "share", "share_all",
                                     "share_diff", "prevalence", "prevalence_all",
                                     "prevalence_diff"])
    out = pd.concat(frames).reset_index()
    out["share_diff"] = out["share"] - out["share_all"]
    out["prevalence_diff"] = out["prevalence"] - out["prevalence_all"]
    return out[["split", "attribute", "group", "share", "share_all", "share_diff",
                "prevalence", "prevalence_all", "prevalence_diff"]]


def _simpson_row(y: pd.Series, inside: pd.Series, strata: pd.Series) -> dict:
    """Crude and stratum-adjusted prevalence differences P(y|in) - P(y|out)."""
    crude = y[inside].mean() - y[~inside].mean()
    cells = pd.DataFrame({"b": strata, "in": inside, "y": y}).groupby(
        ["b", "in"])["y"].agg(["mean", "size"]).unstack("in")
    both = cells["size"].notna().all(axis=1)  # strata holding both sides can compare them
    diff = (cells["mean"][True] - cells["mean"][False])[both]
    weight = cells["size"].sum(axis=1)[both]
    adjusted = float((diff * weight).sum() / weight.sum()) if weight.sum() else np.nan
    text = "; ".join(f"{b}: {d:+.3f} (n={int(n)})" for b, d, n in zip(
        diff.index, diff, weight, strict=True))
    return {"n": int(inside.sum()), "crude_diff": float(crude), "adjusted_diff": adjusted,
            "strata": text}


def simpson_table(table: pd.DataFrame, attributes: list[str], min_effect: float) -> pd.DataFrame:
    """Simpson's paradox check for every (attribute A, group a, other attribute B).

    crude_diff = P(y=1 | A=a) - P(y=1 | A!=a); within each stratum b of B the same difference
    d_b; adjusted_diff = sum_b n_b d_b / sum_b n_b over the strata holding both sides (a
    Mantel-Haenszel-style weighted average). ``flag`` is ``reverses`` when both are at least
    ``min_effect`` in size and of opposite signs, ``vanishes`` when the crude difference is at
    least ``min_effect`` and the adjusted one below half of it, else empty. For a two-group
    attribute only its second group is listed (the first is its mirror image).

    Columns: ``attribute``, ``group``, ``stratified_by``, ``n``, ``crude_diff``,
    ``adjusted_diff``, ``flag``, ``strata`` (each stratum's difference and size).
    """
    rows = []
    y = table["label"].astype(float)
    for a in attributes:
        groups = _groups(table, [a])
        names = sorted(groups.unique())
        for group in names[1:] if len(names) == 2 else names if len(names) > 2 else []:
            inside = groups == group
            for b in (b for b in attributes if b != a):
                row = _simpson_row(y, inside, _groups(table, [b]))
                crude, adjusted = row["crude_diff"], row["adjusted_diff"]
                flag = ""
                if abs(crude) >= min_effect and abs(adjusted) >= min_effect and (
                        np.sign(crude) != np.sign(adjusted)):
                    flag = "reverses"
                elif abs(crude) >= min_effect and abs(adjusted) < min_effect / 2:
                    flag = "vanishes"
                rows.append({"attribute": a, "group": group, "stratified_by": b, **row,
                             "flag": flag})
    columns = ["attribute", "group", "stratified_by", "n", "crude_diff", "adjusted_diff",
               "flag", "strata"]
    return pd.DataFrame(rows, columns=columns)


# the reason prepare gives a duplicate (biaslab.data.prepare.duplicate_reasons), not imported from
# there: the audit would then load, and depend on, the image decoding
DUPLICATE = "duplicate of "


def rejected_kind(reason: str) -> str:
    """The kind of a reason of ``rejected.csv``: its first words, before a ``:`` or `` (``.

    ``duplicate of a.png (table row 3)`` -> ``duplicate``; ``label maybe is not 0/1`` ->
    ``label not 0/1``; ``too small: 1x1 px (...)`` -> ``too small``; ``missing file`` as is.
    """
    if reason.startswith(DUPLICATE):
        return "duplicate"
    if re.fullmatch(r"label .* is not 0/1", reason):
        return "label not 0/1"
    return re.split(r":| \(", reason, maxsplit=1)[0].strip()


def rejected_summary(rejected: pd.DataFrame) -> dict:
    """How many images prepare left out, by kind (the most frequent first).

    Returns
    -------
    dict
        ``{"n": 5, "duplicates": 2, "by_kind": {"duplicate": 2, "missing file": 2,
        "too small": 1}}``
    """
    require_columns(rejected, ["reason"], what="audit (the rejected images)")
    kinds = rejected["reason"].astype(str).map(rejected_kind).value_counts()
    kinds = kinds.sort_index().sort_values(ascending=False, kind="stable")  # ties by name
    return {"n": len(rejected), "duplicates": int(kinds.get("duplicate", 0)),
            "by_kind": {k: int(v) for k, v in kinds.items()}}


def rejected_warnings(counts: dict) -> list[str]:
    """Warnings about the images left out (:func:`rejected_summary`): duplicates."""
    n = counts["duplicates"]
    if not n:
        return []
    return [f"prepare removed {n} duplicate image(s) (the same file listed twice, or "
            "identical pixels), keeping the first copy of each: the data has fewer distinct "
            "images than it lists (see rejected.csv, reason 'duplicate of ...')"]


def run_audit(
    table: pd.DataFrame, attributes: list[str], *, min_group_size: int, level: float = 0.95,
    min_effect: float = 0.02, rejected: pd.DataFrame | None = None,
) -> tuple[dict, dict[str, pd.DataFrame]]:
    """The whole audit of ``table`` (``row``, ``label``, ``split`` and the ``attributes``).

    ``rejected`` is prepare's table of the images it left out (``path``, ``table_row``,
    ``reason``), when given.

    Returns
    -------
    summary : dict
        :func:`audit_summary` plus ``imbalance`` (per column), ``balance`` (per split, the
        largest absolute share difference to the whole, per attribute), ``simpson``
        (flagged rows) and, with ``rejected``, ``rejected`` (:func:`rejected_summary`);
        Simpson flags and duplicates are added to ``warnings``.
    tables : dict of DataFrame
        ``prevalence`` (with intersections), ``univariate``, ``balance``, ``simpson``.
    """
    require_columns(table, ["label", "split"], what="audit")
    require_columns(table, attributes, what="audit.attributes")
    if table.empty:
        raise ValueError("audit: the index has 0 rows, no image to audit; prepare refuses to "
                         "write an empty index: rerun it (dvc repro prepare) and read its error")
    crossed, pairs = with_intersections(table, attributes)
    prevalence = prevalence_table(crossed, [*attributes, *pairs], level)
    tables = {
        "prevalence": prevalence,
        "univariate": univariate_table(table, ["label", *attributes]),
        "balance": balance_table(prevalence[~prevalence["attribute"].isin(pairs)]),
        "simpson": simpson_table(table, attributes, min_effect),
    }
    summary = audit_summary(prevalence[~prevalence["attribute"].isin(pairs)], min_group_size)
    uni = tables["univariate"]
    summary["imbalance"] = {a: round(float(r), 3) for a, r in
                            uni.groupby("attribute", sort=False)["imbalance"].first().items()}
    bal = tables["balance"].assign(gap=lambda d: d["share_diff"].abs())
    bal = bal[bal["attribute"] != "all"]
    summary["balance"] = {s: {a: round(float(g), 4) for a, g in part.groupby(
        "attribute")["gap"].max().items()} for s, part in bal.groupby("split")}
    flagged = tables["simpson"][tables["simpson"]["flag"] != ""]
    summary["simpson"] = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "strata"}
        for row in flagged.to_dict("records")]
    for row in flagged.itertuples():
        summary["warnings"].append(
            f"Simpson: prevalence difference {row.attribute}={row.group} vs the rest is "
            f"{row.crude_diff:+.3f} overall but {row.adjusted_diff:+.3f} within strata of "
            f"{row.stratified_by} ({row.flag})")
    if rejected is not None:
        summary["rejected"] = rejected_summary(rejected)
        summary["warnings"] += rejected_warnings(summary["rejected"])
    return summary, tables
