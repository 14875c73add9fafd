"""Fit a method on a table of predictions and decide every row, counterfactuals included.

The per-group methods (``needs_groups``) take the group of each row from the joint value of
``group_columns`` (``postprocess.groups``); ``fixed`` and ``youden`` take none, so a table
without those columns suits them. The counterfactual decisions ``decision_s0``/``decision_s1``
read the score with S forced to 0/1 *and*, when ``s`` is a group column, the group with S
forced likewise, so a method with per-S thresholds applies the forced group's threshold.
:func:`decide_methods` does both for every method of a run, skipping the ones the data cannot
support (:class:`~biaslab.fairness.thresholds.NotApplicable`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.data.group_keys import group_keys
from biaslab.fairness.thresholds._scores import NotApplicable
from biaslab.fairness.thresholds.registry import make_postprocessor


def row_groups(post, table: pd.DataFrame, group_columns: list[str]) -> np.ndarray | None:
    """Each row's group key if ``post`` needs groups, else None."""
    return group_keys(table, group_columns) if post.needs_groups else None


def fit_postprocessor(method: str, table: pd.DataFrame, group_columns: list[str], *,
                      fixed_threshold: float = 0.5, tolerance: float = 0.0, seed: int = 0):
    """Build the post-processor ``method`` and fit it on ``table``'s ``score`` and ``label``.

    Parameters
    ----------
    method : str
        A key of :data:`biaslab.fairness.thresholds.METHODS`.
    table : DataFrame
        One row per prediction: ``score``, ``label`` and, for per-group methods, the
        ``group_columns``.
    group_columns : list of str
        Attributes whose joint value is a row's group (used only if the method needs groups).
    fixed_threshold, tolerance, seed
        As in :func:`biaslab.fairness.thresholds.make_postprocessor`.

    Returns
    -------
    The fitted post-processor.
    """
    require_columns(table, ("score", "label"), what="predictions")
    post = make_postprocessor(method, fixed_threshold=fixed_threshold, tolerance=tolerance,
                              seed=seed)
    return post.fit(table["score"].to_numpy(), table["label"].to_numpy(),
                    row_groups(post, table, group_columns))


def decide(post, table: pd.DataFrame, group_columns: list[str], *, split: str,
           method: str) -> pd.DataFrame:
    """The decision of the fitted ``post`` on each row of ``table``.

    Parameters
    ----------
    post
        A fitted post-processor (:func:`fit_postprocessor`).
    table : DataFrame
        ``row``, ``score``, the ``group_columns`` for per-group methods and, optionally,
        ``score_s0``/``score_s1`` (the score with S forced to 0/1).
    group_columns : list of str
        As in :func:`fit_postprocessor`.
    split, method : str
        Written in every row of the result.

    Returns
    -------
    DataFrame
        One row per table row, in its order: ``row``, ``split``, ``method``, ``threshold`` (the
        one the row's score is compared with; ``t_high`` for equalized odds), ``score`` (the
        recalibrated probability for a recalibration method, which has ``calibrate``; else the
        model's), ``decision`` (0/1), and ``decision_s0``/``decision_s1`` when the table has
        ``score_s0``/``score_s1``.
    """
    require_columns(table, ("row", "score"), what="predictions")
    keys = row_groups(post, table, group_columns)
    scores = table["score"].to_numpy()
    calibrated = post.calibrate(scores, keys) if hasattr(post, "calibrate") else scores
    out = pd.DataFrame({"row": table["row"].to_numpy(), "split": split, "method": method,
                        "threshold": post.threshold_of(scores, keys), "score": calibrated,
                        "decision": post.predict(scores, keys)})
    for value in (0, 1):
        column = f"score_s{value}"
        if column in table:
            forced = (row_groups(post, table.assign(s=value), group_columns)
                      if "s" in group_columns else keys)
            out[f"decision_s{value}"] = post.predict(table[column].to_numpy(), forced)
    return out


def decide_methods(methods: list[str], val: pd.DataFrame, test: pd.DataFrame,
                   group_columns: list[str], **options) -> tuple[pd.DataFrame, dict]:
    """Fit each method on ``val`` and decide every row of ``val`` and ``test``.

    A method the data cannot support (its fit or its decisions raise
    :class:`~biaslab.fairness.thresholds.NotApplicable`, e.g. a group with one class in validation)
    is
    skipped, and the reason recorded; any other error propagates.

    Parameters
    ----------
    methods : list of str
        Keys of :data:`biaslab.fairness.thresholds.METHODS`, in the order of the output.
    val, test : DataFrame
        The validation rows (fit and decided) and the test rows (decided), as in :func:`decide`,
        with ``label`` in ``val``.
    group_columns : list of str
        As in :func:`fit_postprocessor`.
    **options
        ``fixed_threshold``, ``tolerance``, ``seed``: as in :func:`fit_postprocessor`.

    Returns
    -------
    decisions : DataFrame
        The :func:`decide` rows of every applicable method, val then test for each.
    params : dict
        Method -> its ``params_()``, or ``{"not_applicable": REASON}`` for a skipped method.

    Raises
    ------
    ValueError
        When no method applies (the reason of each is in the message).
    """
    frames, params = [], {}
    for method in methods:
        try:
            post = fit_postprocessor(method, val, group_columns, **options)
            # decide before keeping anything: a test group unseen in validation skips it too
            parts = [decide(post, part, group_columns, split=split, method=method)
                     for split, part in (("val", val), ("test", test))]
        except NotApplicable as exc:
            params[method] = {"not_applicable": exc.reason}
            continue
        frames += parts
        params[method] = post.params_()
    if not frames:
        reasons = "; ".join(f"{m}: {p['not_applicable']}" for m, p in params.items())
        raise ValueError(f"postprocess.methods: no method applies to the {len(val)} validation "
                         f"rows ({reasons}); add fixed, which needs no class, or change the "
                         "data or split")
    return pd.concat(frames, ignore_index=True), params


def not_applicable(params: dict) -> dict[str, str]:
    """Method -> reason, for each method :func:`decide_methods` skipped."""
    return {m: p["not_applicable"] for m, p in params.items() if "not_applicable" in p}
