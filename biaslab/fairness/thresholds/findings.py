"""Threshold methods of a multi-label run: each finding fit on its own labels.

A multi-label run (``data.findings``) writes long predictions, one row per (image, finding) with
a ``finding`` column, and its index carries one 0/1 column per finding, ``label_<Finding>``
(``label`` itself is "any finding"). Each finding is the single-label problem of its own label:
:func:`decide_findings` runs :func:`~biaslab.fairness.thresholds.decide.decide_methods` per
finding. The evaluation of those decisions is :mod:`biaslab.fairness.findings`.
"""

from __future__ import annotations

import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.fairness.thresholds.decide import decide_methods

LABEL = "label_"  # the index's column of finding F: label_F


def is_multilabel(table: pd.DataFrame) -> bool:
    """A multi-label run's predictions or decisions: a ``finding`` column."""
    return "finding" in table.columns


def findings_of(table: pd.DataFrame) -> list[str]:
    """The findings of a long table, in the order they first appear."""
    require_columns(table, ["finding"], what="decisions")
    return list(dict.fromkeys(table["finding"].astype(str)))


def with_label(table: pd.DataFrame, finding: str) -> pd.DataFrame:
    """``table`` with ``label`` = its ``label_<finding>`` column (the index of a multi-label
    run), so that the single-label functions read that finding's labels."""
    require_columns(table, [LABEL + finding], what="index",
                    hint=f"a multi-label index has one column {LABEL}<Finding> per finding")
    return table.assign(label=table[LABEL + finding].astype(int))


def decide_findings(methods: list[str], val: pd.DataFrame, test: pd.DataFrame,
                    group_columns: list[str], **options) -> tuple[pd.DataFrame, dict]:
    """:func:`biaslab.fairness.thresholds.decide_methods` for each finding on its own.

    ``val`` and ``test`` are long predictions (a ``finding`` column) merged with the index
    (``label_<Finding>`` columns). Returns the long decisions (``finding`` after ``row``; the
    findings in the order of ``val``, then as :func:`decide_methods` orders them) and
    finding -> that finding's fitted params (a method it cannot support:
    ``{"not_applicable": REASON}``). A finding to which no method applies is an error naming it.
    """
    frames, fitted = [], {}
    for finding in findings_of(pd.concat([val[["finding"]], test[["finding"]]])):
        parts = [with_label(t[t["finding"] == finding].drop(columns="finding"), finding)
                 for t in (val, test)]
        try:
            decisions, fitted[finding] = decide_methods(methods, *parts, group_columns,
                                                        **options)
        except ValueError as exc:
            raise ValueError(f"finding {finding!r}: {exc}") from None
        decisions.insert(1, "finding", finding)
        frames.append(decisions)
    return pd.concat(frames, ignore_index=True), fitted
