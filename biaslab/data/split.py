"""Stratified, patient-grouped train/val/test split; or the source's own split.

Rows of one patient always land in the same split. Units (a patient, or a single image when the
patient is unknown) are stratified on the chosen columns (the stratum of a patient is that of
its first image), shuffled with a seed within each stratum, and cut by the fractions, so each
split mirrors the whole on every stratum up to rounding. A stratum with fewer than
``min_stratum`` units cannot be cut that way: it is merged with the other small strata of its
parent (the same values on all but the last stratify column, then all but the last two, ...),
with a :class:`SplitWarning`.

Optionally the training split is then subsampled to a fixed size and composition (e.g. 50 %
women, as in Larrazabal et al., PNAS 2020); the rows left out are marked ``unused``, while val
and test stay untouched.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.data.group_keys import patient_units
from biaslab.data.split_names import SOURCE_SPLITS, SPLITS

UNUSED = "unused"  # training rows left out by subsampling
AUTO = "auto"  # split.train_size: the embedded digits task's subsample, every row elsewhere
# the digits task's training rows: few enough that a 32-pixel CNN leans on the injected shortcut
# (docs/getting-started.md); any other source keeps all its training rows under auto
DIGITS_TRAIN_SIZE = 500


class SplitWarning(UserWarning):
    """Something about the split the user should know (merged strata, dropped columns)."""


def _cut(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split ``n`` units into counts proportional to ``fractions`` (largest remainder)."""
    exact = fractions * n
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def _assign(units: pd.DataFrame, stratify: list[str], frac: np.ndarray, seed: int,
            min_stratum: int) -> np.ndarray:
    """Split of each unit, merging strata smaller than ``min_stratum`` level by level."""
    rng = np.random.default_rng(seed)
    assigned = np.empty(len(units), dtype=object)
    pending = np.arange(len(units))
    merged = []
    for depth in range(len(stratify), -1, -1):
        keys = stratify[:depth]
        part = units.iloc[pending]
        strata = part.groupby(keys, sort=True, dropna=False).indices if keys else {
            (): np.arange(len(part))}
        left = []
        for key in sorted(strata, key=str):
            members = pending[strata[key]]
            if len(members) < min_stratum and depth > 0:
                left.append(members)
                values = ", ".join(f"{k}={v}" for k, v in zip(
                    keys, np.atleast_1d(key).tolist(), strict=True))
                merged.append(f"{values} ({len(members)} units)")
                continue
            members = rng.permutation(members)
            assigned[members] = np.repeat(SPLITS, _cut(len(members), frac))
        pending = np.sort(np.concatenate(left)) if left else np.array([], dtype=int)
        if not len(pending):
            break
    if merged:
        warnings.warn(f"strata smaller than split.min_stratum = {min_stratum} merged "
                      f"into their parent (fewer stratify columns): {'; '.join(merged[:10])}",
                      SplitWarning, stacklevel=3)
    return assigned


def stratified_split(
    table: pd.DataFrame, fractions: dict[str, float], stratify: list[str], seed: int,
    min_stratum: int = 1,
) -> pd.DataFrame:
    """Assign each row of ``table`` to train, val or test.

    Parameters
    ----------
    table : DataFrame
        One row per image with ``row``, the ``stratify`` columns and optionally ``patient_id``.
    fractions : dict
        ``{"train": ..., "val": ..., "test": ...}``, summing to 1.
    stratify : list of str
        Columns whose joint values define the strata, e.g. ``["label", "s"]``.
    seed : int
        Seed of the shuffle within strata.
    min_stratum : int
        Strata with fewer units are merged (1: never).

    Returns
    -------
    DataFrame with ``row`` and ``split``.
    """
    require_columns(table, stratify, what="split.stratify")
    unit = patient_units(table)
    units = table.assign(_unit=unit.to_numpy()).drop_duplicates("_unit")
    frac = np.array([fractions[s] for s in SPLITS], dtype=float)
    assigned = _assign(units.reset_index(drop=True), list(stratify), frac, seed, min_stratum)
    split_of_unit = pd.Series(assigned, index=units["_unit"].to_numpy())
    return pd.DataFrame(
        {"row": table["row"].to_numpy(), "split": split_of_unit.loc[unit.to_numpy()].to_numpy()}
    )


def source_split(table: pd.DataFrame) -> pd.DataFrame:
    """Keep the source's own split (column ``source_split``: train/valid/test, ...).

    Fails if the column is absent, a value is unknown, a split is empty, or a patient is in
    two splits.
    """
    require_columns(table, ["source_split"], what="split.use_source",
                    hint="this source ships no split (the folder source reads it from split "
                         "folders train/valid/test)")
    split = table["source_split"].astype("string").str.lower().map(SOURCE_SPLITS)
    unknown = sorted(set(table.loc[split.isna(), "source_split"].astype(str)))
    if unknown:
        raise ValueError(f"split.use_source: unknown split name(s) {unknown}; expected one of "
                         f"{', '.join(SOURCE_SPLITS)}")
    empty = [s for s in SPLITS if not (split == s).any()]
    if empty:
        raise ValueError(f"split.use_source: the source has no {empty} rows; use "
                         "split.use_source: false to split it here")
    per_patient = split.groupby(table["patient_id"]).nunique() if "patient_id" in table else []
    straddle = list(per_patient[per_patient > 1].index[:5]) if len(per_patient) else []
    if straddle:
        raise ValueError(f"split.use_source: patient(s) {straddle} appear in two splits of "
                         "the source; use split.use_source: false for a patient-grouped split")
    return pd.DataFrame({"row": table["row"].to_numpy(), "split": split.to_numpy(dtype=object)})


def train_rows(train_size: int | str, source: str, *, composition: dict | None = None) -> int:
    """``split.train_size`` as a number of training rows (0: every training row).

    ``auto`` is :data:`DIGITS_TRAIN_SIZE` on the embedded ``digits`` source (the task the
    repository's defaults are made for) and 0 on every other source, so that pointing the
    pipeline at other data keeps all of it rather than failing for want of 500 rows. An
    integer is taken as it is.

    Raises ValueError when ``composition`` is set but the size comes to 0: a composition
    needs a subsample to shape.
    """
    rows = (DIGITS_TRAIN_SIZE if source == "digits" else 0) if train_size == AUTO else train_size
    if composition and not rows:
        raise ValueError(f"split.train_composition needs a split.train_size > 0 (train_size "
                         f"{train_size} keeps every training row of the {source} source); "
                         "set split.train_size to the rows wanted")
    return int(rows)


def subsample_train(
    table: pd.DataFrame, split: pd.Series, *, size: int, composition: dict, seed: int
) -> pd.Series:
    """Keep ``size`` training rows (others become ``unused``), with a chosen composition.

    Parameters
    ----------
    table : DataFrame
        Rows aligned with ``split``, with ``label`` and the composition's attribute.
    split : Series
        Split of each row.
    size : int
        Training rows to keep.
    composition : dict
        ``{}`` (a random sample) or ``{"attribute": a, "value": v, "share": p}``: round(p *
        size) rows with ``a == v`` and the rest with another (known) value of ``a``.
        Within each part, rows are drawn stratified on the label, so prevalence is kept.
    seed : int

    Returns
    -------
    Series: the new split of each row.
    """
    train = split.to_numpy() == "train"
    if composition:
        attr, value, share = composition["attribute"], composition["value"], composition["share"]
        require_columns(table, [attr], what="split.train_composition.attribute")
        column = table[attr].astype("string")
        is_value = (column == str(value)).fillna(False).to_numpy()
        parts = [(train & is_value, int(round(share * size)), f"{attr} = {value}"),
                 (train & ~is_value & column.notna().to_numpy(),
                  size - int(round(share * size)), f"{attr} != {value}")]
    else:
        parts = [(train, size, "training rows")]
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(split), dtype=bool)
    for mask, wanted, what in parts:
        if mask.sum() < wanted:
            raise ValueError(f"split.train_size: {wanted} training rows with {what} wanted, "
                             f"only {int(mask.sum())} available (0 keeps every training row)")
        keep[_draw_by_label(table["label"].to_numpy(), mask, wanted, rng)] = True
    out = split.copy()
    out[train & ~keep] = UNUSED
    return out


def _draw_by_label(labels: np.ndarray, mask: np.ndarray, wanted: int, rng) -> np.ndarray:
    """Indices of ``wanted`` rows drawn from ``mask``, each label in proportion."""
    rows = np.flatnonzero(mask)
    values, counts = np.unique(labels[rows], return_counts=True)
    take = _cut(wanted, counts / counts.sum()) if len(rows) else np.zeros(0, int)
    chosen = [rng.choice(rows[labels[rows] == v], k, replace=False)
              for v, k in zip(values, take, strict=True)]
    return np.concatenate(chosen) if chosen else np.array([], dtype=int)


# ------------------------------------------------------------------ what the parts must hold


def missing_in_parts(table: pd.DataFrame, split, columns: list[str]) -> list[tuple]:
    """What the parts lack that a later stage needs, found before any model is trained.

    Every part needs both labels (a model is trained on train, its thresholds are chosen on
    val, it is scored on test); val and test need every value of ``columns`` that the table
    holds (postprocess fits per-group thresholds on val, evaluate compares the groups on
    test). Missing values are not a group here.

    Parameters
    ----------
    table : DataFrame
        Rows aligned with ``split``, with ``label`` and the ``columns`` (those it lacks are
        skipped).
    split : array-like of str
        Part of each row (``unused`` rows belong to none).
    columns : list of str
        Group columns, e.g. ``["s"]``; ``label`` among them is ignored (always checked).

    Returns
    -------
    list of (part, column, value, images with that value in all)
        E.g. ``[("test", "label", 1, 3)]``; empty when every part holds what it needs.
    """
    split = np.asarray(split, dtype=object)
    checked = [c for c in columns if c != "label" and c in table.columns]
    lacking = []
    for part in SPLITS:
        inside = split == part
        for column in ["label", *checked] if part != "train" else ["label"]:
            values = table[column]
            wanted = [0, 1] if column == "label" else sorted(values.dropna().unique(), key=str)
            present = set(values[inside].dropna())
            lacking += [(part, column, v, int((values == v).sum())) for v in wanted
                        if v not in present]
    return lacking


def parts_error(lacking: list[tuple], *, use_source: bool, stratify: list[str]) -> str:
    """One line saying what the parts lack (:func:`missing_in_parts`) and what to change."""
    parts = list(dict.fromkeys(part for part, *_ in lacking))
    said = []
    for part in parts:
        what = [_image_with(column, value, n) for p, column, value, n in lacking if p == part]
        more = f" (and {len(what) - 3} more)" if len(what) > 3 else ""
        whose = "the source's" if use_source else "the"
        said.append(f"{whose} {part} part has no image with {' nor with '.join(what[:3])}{more}")
    if use_source:
        return (f"{'; '.join(said)}; move such images into the source's {'/'.join(parts)} "
                "split, or set split.use_source: false to split the data here")
    unstratified = sorted({column for _, column, *_ in lacking} - {"label", *stratify})
    add = f", and add {', '.join(unstratified)} to split.stratify" if unstratified else ""
    larger = " and ".join(f"split.fractions.{part}" for part in parts)
    return (f"{'; '.join(said)}; use a larger {larger}, a smaller split.min_stratum, or more "
            f"data{add}")


def _image_with(column: str, value, n: int) -> str:
    if column == "label":
        return f"label {value} ({n} {'positives' if value == 1 else 'negatives'} in all)"
    return f"{column} = {value} ({n} in all)"
