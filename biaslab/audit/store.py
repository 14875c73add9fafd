"""A checked predictions table and its decisions as flat tables, and back: what the steps of an
audit run as a DVC project (:mod:`biaslab.audit.project`) hand each other through files.

The nested shapes of :mod:`biaslab.audit.run` (recipe -> model -> table) become one long table
with ``recipe`` and ``model`` columns, in the same order; reading it back gives the same dicts,
so that the steps compute what one ``biaslab audit`` computes (tests/test_audit_init.py).
"""

from __future__ import annotations

import pandas as pd

from biaslab.audit.table import Predictions

KEYS = ("recipe", "model")


def flatten(nested: dict[str, dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """recipe -> model -> table, as one table with ``recipe`` and ``model`` columns first."""
    parts = [part.assign(recipe=recipe, model=model)
             for recipe, models in nested.items() for model, part in models.items()]
    table = pd.concat(parts, ignore_index=True)
    return table[[*KEYS, *[c for c in table.columns if c not in KEYS]]]


def nest(table: pd.DataFrame) -> dict[str, dict[str, pd.DataFrame]]:
    """:func:`flatten`'s inverse: recipes and models in the order they first appear."""
    for key in KEYS:
        if key not in table.columns:
            raise ValueError(f"expected a column {key!r} (a table written by flatten); "
                             f"found {', '.join(map(str, table.columns))}")
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for (recipe, model), part in table.groupby(list(KEYS), sort=False):
        out.setdefault(str(recipe), {})[str(model)] = (
            part.drop(columns=list(KEYS)).reset_index(drop=True))
    return out


def predictions_of(attributes: pd.DataFrame, models: pd.DataFrame,
                   source: str = "predictions") -> Predictions:
    """The :class:`~biaslab.audit.table.Predictions` of its two tables: ``attributes`` and
    the models' rows flattened (:func:`flatten` of ``recipes``); the kind is the column the
    models' rows hold, ``score`` or ``decision``."""
    kind = "decision" if "decision" in models.columns else "score"
    return Predictions(attributes, nest(models), kind, source)
