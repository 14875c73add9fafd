"""The data audit a careful student does first: who is in the data, with which labels, where.

Counts and label prevalence of every group, overall and per split, with Wilson intervals, so a
label that depends on a group (the door a shortcut walks through) is visible before training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def wilson(k: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion k/n (NaN where n = 0)."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def prevalence_table(table: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """Label prevalence per (split, attribute, group), with ``all`` rows for the whole data.

    Columns: ``split`` (train/val/test/all), ``attribute``, ``group``, ``n``, ``positives``,
    ``prevalence``, ``prevalence_lo``, ``prevalence_hi``, ``share`` (of the split's rows).
    """
    frames = []
    for split, part in [("all", table), *table.groupby("split", sort=True)]:
        for attr in ["all", *attributes]:
            keys = pd.Series("all", index=part.index) if attr == "all" else part[attr].astype(str)
            agg = part.groupby(keys, sort=True)["label"].agg(["size", "sum"])
            frames.append(pd.DataFrame({
                "split": split, "attribute": attr, "group": agg.index.astype(str),
                "n": agg["size"].to_numpy(), "positives": agg["sum"].to_numpy(),
            }))
    out = pd.concat(frames, ignore_index=True)
    out["prevalence"] = out["positives"] / out["n"]
    out["prevalence_lo"], out["prevalence_hi"] = wilson(out["positives"], out["n"])
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
    small = prevalence[(prevalence["attribute"] != "all") & (prevalence["n"] < min_group_size)]
    for row in small.itertuples():
        summary["warnings"].append(
            f"{row.attribute}={row.group} has {row.n} rows in split {row.split} "
            f"(fewer than {min_group_size}): its metrics will be unreliable"
        )
    return summary
