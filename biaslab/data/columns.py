"""The one missing-column check: every table read by the library names what it lacks."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def require_columns(
    table: pd.DataFrame, columns: Iterable[str], *, what: str, hint: str = ""
) -> None:
    """Raise ValueError when ``table`` lacks any of ``columns``.

    ``what`` names the key or file the columns come from (``evaluate.groups``,
    ``data/split.parquet``), so the message says where to look, what is missing and what is
    there: ``evaluate.groups: column(s) ['sex'] not found; available: ['row', 'label', 's']``.
    ``hint``, when given, is appended after a semicolon (what to do about it).
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: column(s) {missing} not found; available: "
                         f"{list(table.columns)}" + (f"; {hint}" if hint else ""))
