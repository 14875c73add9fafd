"""Several findings (``data.findings``): one 0/1 label column per finding in the index.

A multi-label index keeps ``label`` as "any finding" (1 when any of its findings is 1), so that
what reads one label (the split's strata, the weighting schemes, the audit) goes on reading one,
and adds ``label_<Finding>`` (int8) per finding, in the order of ``data.findings``. A
single-label index has no such column: :func:`findings_of` finds the findings from the columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.data.finding_names import LABEL_PREFIX, NIH_FINDINGS

__all__ = ["LABEL_PREFIX", "NIH_FINDINGS", "any_finding", "finding_labels", "findings_of",
           "label_columns"]

# the spellings of a 0/1 label a table may use, compared lower-cased and stripped
_LABELS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1, "no": 0, "yes": 1}


def label_columns(findings: list[str]) -> list[str]:
    """The index's columns of ``findings``: ``label_Atelectasis``, ..."""
    return [LABEL_PREFIX + f for f in findings]


def findings_of(table: pd.DataFrame) -> list[str]:
    """The findings of an index (or of any table with its columns), in the index's order;
    [] for a single-label one."""
    return [c[len(LABEL_PREFIX):] for c in table.columns if str(c).startswith(LABEL_PREFIX)]


def finding_labels(table: pd.DataFrame, findings: list[str], *, where: str) -> pd.DataFrame:
    """The 0/1 columns ``findings`` of a source's table as the index's ``label_F`` (int8).

    Parameters
    ----------
    table : DataFrame
        The table as read (strings); its DataFrame index is the table row (0 = the first row
        after the header).
    findings : list of str
        Its columns holding each finding's label: 0/1 (also true/false, yes/no, any case).
    where : str
        The file, in the errors.

    Returns
    -------
    DataFrame, same index as ``table``: one int8 column ``label_F`` per finding, in order.

    Raises
    ------
    ValueError
        A finding's column is missing, or holds a value that is not a 0/1 label (an empty cell
        too: a finding left blank is not "absent"): the message names the file, the first bad
        row and column, the value and how many such cells there are.
    """
    require_columns(table, findings, what=f"{where} (data.findings)",
                    hint="each finding of data.findings is a 0/1 column of the table")
    out = pd.DataFrame(index=table.index)
    for finding in findings:
        text = table[finding].astype("string").str.strip().str.lower()
        values = text.map(_LABELS)
        bad = values.isna()
        if bad.any():
            row = table.index[bad.to_numpy()][0]
            value = table[finding][row]
            raise ValueError(
                f"{where}: table row {row} (counting from 0 after the header), column "
                f"{finding!r} = {value!r} is not a 0/1 label (0/1, true/false, yes/no); "
                f"{int(bad.sum())} such cell(s) in that column (data.findings)")
        out[LABEL_PREFIX + finding] = values.astype(np.int8)
    return out


def any_finding(labels: pd.DataFrame) -> pd.Series:
    """``label`` of a multi-label index: 1 when any of the ``label_F`` columns is 1 (int8)."""
    return labels.max(axis=1).astype(np.int8) if labels.shape[1] else pd.Series(
        np.zeros(len(labels), dtype=np.int8), index=labels.index)
