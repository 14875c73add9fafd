"""The predictions table of a model to audit: every check before any work, then its parts.

One row per (model, image). :func:`check_predictions` reads the columns the user named
(:class:`Columns`) and refuses a bad table with one line naming the table, the column, the
row(s) and what was expected: a missing column (with the columns there are), a label other
than 0/1, a score that is missing or outside [0, 1] (it says when the values look like logits
or percentages), logits (``--logits``) that look like probabilities, a decision other than
0/1, a split other than val/test, a missing group or id, an image listed twice for one model,
a patient in both val and test, test images of one class only, a model without test rows, an
image whose label, groups, split or patient differ between models, and seeds of one recipe
that were not run on the same images. Row numbers count the table's data rows from 1 (a CSV's
header is not a row).

It returns :class:`Predictions`: the attribute table of the images (``row``, ``label``,
``split``, the groups, ``patient_id``), the shape the pipeline's index has, and each model's
predictions (``row``, ``split``, ``score`` or ``decision``) in the table's order, grouped into
recipes (several seeds of one recipe, or one model alone).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

SPLITS = ("val", "test")
# the names the audit's own tables use: a group column may not take one
RESERVED = ("row", "label", "split", "score", "decision", "patient_id", "method", "scheme",
            "seed", "threshold", "set", "attribute", "group", "n", "patients")
SHOWN = 3  # rows named in an error; the count says how many more


@dataclass(frozen=True)
class Columns:
    """The columns of the predictions table, as the user names them (None: absent).

    ``score`` holds a probability in [0, 1] (with ``logits``, a logit, turned into one by the
    logistic function); ``decision`` holds hard 0/1 decisions instead, when the model gives no
    score. Without ``split`` every row is a test row; without ``model`` the table is one
    model's; without ``id`` an image is its row (so one model only); without ``patient`` each
    image is a patient of its own.
    """

    label: str = "label"
    score: str | None = "score"
    decision: str | None = None
    logits: bool = False
    split: str | None = None
    patient: str | None = None
    id: str | None = None
    model: str | None = None

    def named(self) -> dict[str, str]:
        """Option -> column, for every column named."""
        return {k: v for k, v in (("label", self.label), ("score", self.score),
                                  ("decision", self.decision), ("split", self.split),
                                  ("patient", self.patient), ("id", self.id),
                                  ("model", self.model)) if v is not None}


@dataclass(frozen=True)
class Predictions:
    """A checked predictions table, in the pipeline's shapes.

    ``attributes``: one row per image (``row``, ``label``, ``split``, the group columns and
    ``patient_id`` when known), what the pipeline's index joined with its bias table holds.
    ``recipes``: recipe -> model -> that model's rows (``row``, ``split``, ``score`` or
    ``decision``) in the table's order; a recipe of several models is one recipe trained from
    several seeds. ``kind``: ``score`` or ``decision``. ``ids``: the id of each row's image.
    """

    attributes: pd.DataFrame
    recipes: dict[str, dict[str, pd.DataFrame]]
    kind: str
    source: str = "predictions"
    ids: pd.Series | None = None  # row -> the image's id, to name images in errors


def check_predictions(table: pd.DataFrame, groups: Sequence[str], columns: Columns, *,
                      source: str = "predictions",
                      seeds: Mapping[str, Sequence[str]] | None = None) -> Predictions:
    """Check a predictions table and split it into attributes and models.

    Parameters
    ----------
    table : DataFrame
        The table as read, one row per (model, image).
    groups : sequence of str
        The attribute columns the audit compares or thresholds by (``sex``, ``age_group``).
    columns : Columns
        The other columns' names.
    source : str
        The table's name (its file), first in every error.
    seeds : mapping of str to list of str, optional
        Recipe -> the values of the model column that are its seeds (``{"densenet": ["seed0",
        "seed1", "seed2"]}``); every other model is a recipe of its own.

    Raises
    ------
    ValueError
        On the first bad input, naming ``source``, the column and the rows.
    """
    _check_columns(table, groups, columns, source)
    if seeds and columns.model is None:
        raise ValueError(f"--seeds-of {', '.join(seeds)}=...: no --model, the column naming "
                         "the model of each row; the seeds are values of that column")
    if table.empty:
        raise ValueError(f"{source}: the table has no rows; expected one row per (model, image)")
    table = table.reset_index(drop=True)
    model = _names(table, columns.model, source, "model") if columns.model else pd.Series(
        "model", index=table.index)
    if columns.id is None and model.nunique() > 1:
        raise ValueError(f"{source}: column {columns.model!r} (--model) names "
                         f"{model.nunique()} models; give --id, the column naming each image, "
                         "so their rows can be matched")
    ids = _names(table, columns.id, source, "id") if columns.id else table.index.astype(str)
    _check_unique(model, ids, source, columns.id)
    out = pd.DataFrame({"model": model.to_numpy(), "id": np.asarray(ids)})
    out["label"] = _binary(table[columns.label], source, columns.label, "label")
    if columns.decision is not None:
        out["decision"] = _binary(table[columns.decision], source, columns.decision,
                                  "decision")
    else:
        out["score"] = _scores(table[columns.score], source, columns.score, columns.logits)
    out["split"] = _splits(table, columns.split, source)
    for g in groups:
        out[g] = _present(table[g], source, g, "group (--groups)")
    if columns.patient is not None:  # a missing patient: the image is a patient of its own
        out["patient_id"] = table[columns.patient].astype("string")
    attributes = _attributes(out, groups, columns, source)
    out["row"] = out["id"].map(dict(zip(attributes["id"], attributes["row"], strict=True)))
    kind = "decision" if columns.decision is not None else "score"
    recipes = _recipes(out, kind, seeds or {}, source, columns)
    return Predictions(attributes.drop(columns="id"), recipes, kind, source,
                       ids=attributes["id"])


def _check_columns(table: pd.DataFrame, groups: Sequence[str], columns: Columns,
                   source: str) -> None:
    if columns.score is None and columns.decision is None:
        raise ValueError("give the score column (--score) or the decision column (--decision)")
    if columns.logits and columns.score is None:
        raise ValueError("--logits says the score column holds logits, but --decision gives "
                         "hard 0/1 decisions and no score: drop --logits")
    named = [(f"--{k}", v) for k, v in columns.named().items()]
    named += [("--groups", g) for g in groups]
    there = [str(c) for c in table.columns]
    for option, name in named:
        if name not in there:
            close = difflib.get_close_matches(name, there, n=1)
            raise ValueError(f"{source}: no column {name!r} ({option})"
                             + (f"; did you mean {close[0]!r}?" if close else "")
                             + f"; the table's columns are: {', '.join(there)}")
    for g in groups:
        if g in RESERVED:
            raise ValueError(f"{source}: a group column may not be named {g!r} (the audit's "
                             f"own tables use it); rename it; reserved: {', '.join(RESERVED)}")
    used = [v for _, v in named]
    twice = sorted({v for v in used if used.count(v) > 1})
    if twice:
        raise ValueError(f"{source}: column(s) {twice} named for two roles; each of --label, "
                         "--score/--decision, --split, --patient, --id, --model and --groups "
                         "needs a column of its own")


def _rows(mask: np.ndarray, values: pd.Series | None = None) -> str:
    """``rows 4, 9, 12 (of 17)``: the first bad rows (from 1), with their values."""
    where = np.flatnonzero(mask)
    shown = [f"{i + 1}" + (f" ({_value(values.iloc[i])})" if values is not None else "")
             for i in where[:SHOWN]]
    more = f" and {len(where) - SHOWN} more" if len(where) > SHOWN else ""
    return ("row " if len(where) == 1 else "rows ") + ", ".join(shown) + more


def _value(value) -> str:
    """A cell as the user wrote it: ``2``, ``'train'``, ``empty``."""
    if pd.isna(value):
        return "empty"
    return repr(value.item() if isinstance(value, np.generic) else value)


def _present(values: pd.Series, source: str, column: str, what: str) -> pd.Series:
    missing = values.isna().to_numpy()
    if missing.any():
        raise ValueError(f"{source}: column {column!r}: {_rows(missing)} empty; every row needs "
                         f"a {what}: fill it (e.g. 'unknown' for a group) or drop the row")
    return values


def _names(table: pd.DataFrame, column: str, source: str, option: str) -> pd.Series:
    return _present(table[column], source, column, f"value (--{option})").astype(str)


def _check_unique(model: pd.Series, ids, source: str, id_column: str | None) -> None:
    twice = pd.DataFrame({"m": model.to_numpy(), "i": np.asarray(ids)}).duplicated(keep=False)
    if twice.any():
        first = np.flatnonzero(twice.to_numpy())[0]
        raise ValueError(f"{source}: column {id_column!r} (--id): image {ids[first]!r} is listed "
                         f"more than once for model {model.iloc[first]!r} ({_rows(twice)}); "
                         "expected one row per (model, image)")


def _binary(values: pd.Series, source: str, column: str, what: str) -> np.ndarray:
    number = pd.to_numeric(values, errors="coerce")
    bad = ~number.isin([0, 1]).to_numpy()
    if bad.any():
        raise ValueError(f"{source}: column {column!r} (--{what}): {_rows(bad, values)}; "
                         f"expected 0 or 1 in every row")
    return number.to_numpy().astype(np.int8)


def _scores(values: pd.Series, source: str, column: str, logits: bool) -> np.ndarray:
    number = pd.to_numeric(values, errors="coerce")
    bad = (number.isna() | ~np.isfinite(number.fillna(0))).to_numpy()
    if bad.any():
        raise ValueError(f"{source}: column {column!r} (--score): {_rows(bad, values)}; "
                         "expected a number in every row (a model that gives no score for an "
                         "image must be audited without it: drop the row, and say so)")
    number = number.to_numpy(dtype=float)
    if logits:
        if ((number >= 0) & (number <= 1)).all():
            raise ValueError(f"{source}: column {column!r} (--score, --logits): every value lies "
                             f"in [0, 1] ({number.min():.4g} to {number.max():.4g}): they look "
                             "like probabilities, which the logistic function would squeeze "
                             "into [0.5, 0.73]; drop --logits")
        return expit(number)
    outside = (number < 0) | (number > 1)
    if outside.any():
        raise ValueError(f"{source}: column {column!r} (--score): {_rows(outside, values)} "
                         f"outside [0, 1]; expected a probability (the values run from "
                         f"{number.min():.4g} to {number.max():.4g}: {_looks_like(number)})")
    return number


def _looks_like(number: np.ndarray) -> str:
    """What scores outside [0, 1] look like, and what to do."""
    if number.min() < 0:
        return "negative values, they look like logits: add --logits"
    if number.max() <= 100:
        return "they look like percentages: divide them by 100"
    return "if they are logits, add --logits"


def _splits(table: pd.DataFrame, column: str | None, source: str) -> np.ndarray:
    if column is None:
        return np.full(len(table), "test", dtype=object)
    values = table[column].astype("string").str.strip().str.lower()
    bad = ~values.isin(SPLITS).fillna(False).to_numpy()
    if bad.any():
        raise ValueError(f"{source}: column {column!r} (--split): {_rows(bad, table[column])}; "
                         "expected val or test (thresholds are fitted on val, figures on test; "
                         "leave the training rows out)")
    return values.to_numpy(dtype=object)


def _attributes(rows: pd.DataFrame, groups: Sequence[str], columns: Columns,
                source: str) -> pd.DataFrame:
    """One row per image: its label, split, groups, patient, the same in every model's rows."""
    keep = ["label", "split", *groups, *(["patient_id"] if columns.patient else [])]
    for col in keep:
        values = rows[col].astype("string").fillna("<NA>")
        kinds = values.groupby(rows["id"].to_numpy(), sort=False).nunique()
        if (kinds > 1).any():
            image = kinds.index[kinds > 1][0]
            found = sorted(values[rows["id"] == image].unique())
            name = {"label": columns.label, "split": columns.split,
                    "patient_id": columns.patient}.get(col, col)
            raise ValueError(f"{source}: column {name!r}: image {image!r} has {found} in the "
                             "rows of different models; an image has one value, whatever the "
                             "model")
    attributes = rows.drop_duplicates("id")[["id", *keep]]
    if columns.id is not None:  # rows in the ids' order: the figures do not depend on the table's
        attributes = attributes.sort_values("id", kind="stable")
    attributes = attributes.reset_index(drop=True)
    attributes.insert(0, "row", np.arange(len(attributes)))
    if columns.patient:
        _check_patients(attributes, source, columns.patient)
    if not (attributes["split"] == "test").any():
        raise ValueError(f"{source}: column {columns.split!r} (--split): no test row; the "
                         "figures are computed on the test rows")
    classes = attributes.loc[attributes["split"] == "test", "label"].unique()
    if len(classes) < 2:
        raise ValueError(f"{source}: column {columns.label!r} (--label): every test image is "
                         f"{classes[0]}; the figures (rates, balanced accuracy, gaps) need test "
                         "images of both classes")
    return attributes


def _check_patients(attributes: pd.DataFrame, source: str, column: str) -> None:
    known = attributes.dropna(subset=["patient_id"])
    splits = known.groupby("patient_id")["split"].nunique()
    both = splits.index[splits > 1]
    if len(both):
        raise ValueError(f"{source}: column {column!r} (--patient): {len(both)} patient(s) in "
                         f"both val and test, e.g. {both[0]!r}; a patient's images belong to "
                         "one split, or the thresholds fitted on val see the test patients")


def _recipes(rows: pd.DataFrame, kind: str, seeds: Mapping[str, Sequence[str]], source: str,
             columns: Columns) -> dict[str, dict[str, pd.DataFrame]]:
    models = list(dict.fromkeys(rows["model"]))
    recipe_of = _recipe_of(models, seeds, columns)
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for model in models:
        part = rows.loc[rows["model"] == model, ["row", "split", kind]].reset_index(drop=True)
        out.setdefault(recipe_of[model], {})[model] = part
    for recipe, by_model in out.items():
        for model, part in by_model.items():
            if not (part["split"] == "test").any():
                raise ValueError(f"{source}: column {columns.model!r} (--model): model "
                                 f"{model!r} has no test row (its {len(part)} rows are val); "
                                 "every figure is computed on a model's test rows")
        (first, reference), *others = by_model.items()
        for model, part in others:
            _same_images(reference, part, first, model, recipe, rows, source)
    return out


def _recipe_of(models: list[str], seeds: Mapping[str, Sequence[str]],
               columns: Columns) -> dict[str, str]:
    recipe_of = {m: m for m in models}
    for recipe, members in seeds.items():
        if recipe in models and recipe not in members:
            raise ValueError(f"--seeds-of {recipe}=...: {recipe!r} is also a model of column "
                             f"{columns.model!r}; give the recipe another name")
        for m in members:
            if m not in models:
                raise ValueError(f"--seeds-of {recipe}=...: no model {m!r} in column "
                                 f"{columns.model!r} (--model); its models are: "
                                 f"{', '.join(models)}")
            if recipe_of[m] != m:
                raise ValueError(f"--seeds-of: model {m!r} is a seed of both {recipe_of[m]!r} "
                                 f"and {recipe!r}")
            recipe_of[m] = recipe
    return recipe_of


def _same_images(reference: pd.DataFrame, part: pd.DataFrame, first: str, model: str,
                 recipe: str, rows: pd.DataFrame, source: str) -> None:
    """The seeds of a recipe were run on the same images (their figures are averaged)."""
    a, b = set(reference["row"]), set(part["row"])
    if a == b:
        return
    ids = dict(zip(rows["row"], rows["id"], strict=False))
    only_a, only_b = sorted(a - b), sorted(b - a)
    which = (f"{len(only_a)} image(s) of {first!r} are not in {model!r} (e.g. "
             f"{ids[only_a[0]]!r})" if only_a else
             f"{len(only_b)} image(s) of {model!r} are not in {first!r} (e.g. "
             f"{ids[only_b[0]]!r})")
    raise ValueError(f"{source}: the seeds of {recipe!r} were not run on the same images: "
                     f"{which}; seeds are averaged image by image, so each needs every image")
