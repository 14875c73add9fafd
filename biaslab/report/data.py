"""Tables the report's figures are drawn from: test scores and decision counts per group.

Pure: the predictions and decisions of each scheme (as ``predict`` and ``postprocess`` write
them) and the rows' labels and attributes in; DataFrames out. With several training seeds the
figures show one seed, the first: the tables keep it and :func:`first_seed` says which.
"""

from __future__ import annotations

import pandas as pd

from biaslab.data.group_keys import MISSING, group_keys


def first_seed(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each scheme's rows of its lowest ``seed`` (frames without a ``seed`` column as they are)."""
    out = {}
    for scheme, frame in frames.items():
        if "seed" in frame.columns and len(frame):
            frame = frame[frame["seed"] == frame["seed"].min()]
        out[scheme] = frame
    return out


def _with_groups(frame: pd.DataFrame, rows: pd.DataFrame, attributes: list[str],
                 what: str) -> pd.DataFrame:
    """``frame``'s test rows with ``label`` and one group column per attribute (``s=0``)."""
    test = frame[frame["split"] == "test"] if "split" in frame.columns else frame
    need = ["row", "label", *[a for a in attributes if a in rows.columns]]
    missing = [a for a in attributes if a not in rows.columns]
    if missing:
        raise ValueError(f"{what}: attribute(s) {missing} not in the index or bias table; "
                         f"found {list(rows.columns)}")
    table = test.drop(columns=["label"], errors="ignore").merge(rows[need], on="row",
                                                                 how="inner")
    for attribute in attributes:
        table[attribute] = group_keys(table, [attribute], what=what, missing=MISSING)
    return table


def test_scores(predictions: dict[str, pd.DataFrame], rows: pd.DataFrame,
                attributes: list[str]) -> pd.DataFrame:
    """Test scores of every scheme: ``scheme``, ``row``, ``label``, ``score``, and one column
    per attribute holding the row's group (``s=0``).

    ``predictions``: scheme -> predict's table (``row``, ``split``, ``score``, optionally
    ``seed``); ``rows``: ``row``, ``label`` and the attribute columns (index joined with bias).
    """
    parts = [_with_groups(frame, rows, attributes, "report").assign(scheme=scheme)
             for scheme, frame in first_seed(predictions).items()]
    if not parts:
        return pd.DataFrame(columns=["scheme", "row", "label", "score", *attributes])
    table = pd.concat(parts, ignore_index=True)
    return table[["scheme", "row", "label", "score", *attributes]]


def decision_counts(decisions: dict[str, pd.DataFrame], rows: pd.DataFrame,
                    attributes: list[str]) -> pd.DataFrame:
    """Confusion counts of every (scheme, method) on the test split, per group of each
    attribute: ``scheme``, ``method``, ``attribute``, ``group``, ``tp``, ``fp``, ``tn``,
    ``fn``, ``tpr``, ``fpr`` (NaN without positives, or negatives).

    ``decisions``: scheme -> postprocess's table (``row``, ``split``, ``method``,
    ``decision``, optionally ``seed``).
    """
    out = []
    for scheme, frame in first_seed(decisions).items():
        table = _with_groups(frame, rows, attributes, "report")
        y, d = table["label"].astype(int), table["decision"].astype(int)
        table = table.assign(tp=(y & d), fp=((1 - y) & d), tn=((1 - y) & (1 - d)),
                             fn=(y & (1 - d)))
        for attribute in attributes:
            sums = table.groupby(["method", attribute], sort=False)[["tp", "fp", "tn", "fn"]].sum()
            sums = sums.reset_index().rename(columns={attribute: "group"})
            out.append(sums.assign(scheme=scheme, attribute=attribute))
    columns = ["scheme", "method", "attribute", "group", "tp", "fp", "tn", "fn"]
    if not out:
        return pd.DataFrame(columns=[*columns, "tpr", "fpr"])
    counts = pd.concat(out, ignore_index=True)[columns]
    positives, negatives = counts["tp"] + counts["fn"], counts["fp"] + counts["tn"]
    counts["tpr"] = (counts["tp"] / positives.where(positives > 0)).astype(float)
    counts["fpr"] = (counts["fp"] / negatives.where(negatives > 0)).astype(float)
    return counts.sort_values(["scheme", "method", "attribute", "group"], kind="stable",
                              key=lambda col: col.map(_order(counts, col.name))
                              ).reset_index(drop=True)


def _order(counts: pd.DataFrame, column: str) -> dict:
    """Rank of each value of ``column`` in order of first appearance (schemes and methods keep
    the pipeline's order; groups sort by name)."""
    values = counts[column]
    ordered = sorted(values.unique()) if column == "group" else list(dict.fromkeys(values))
    return {v: i for i, v in enumerate(ordered)}
