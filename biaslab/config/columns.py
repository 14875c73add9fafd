"""The columns params.yaml names, checked against the index before any model is trained.

Keys such as ``evaluate.groups`` or ``postprocess.groups`` name columns of the index; each stage
checks its own, but ``evaluate`` runs only after every model is trained, so a misspelt group
would cost the whole training. :func:`check_columns` checks every such key at once, from the
columns the index has (``split`` calls it, before ``weights`` and ``train``).

The keys are found from the models, not listed here: a field whose type is wrapped in
:func:`biaslab.config.fields.names_columns` is checked (:func:`column_keys` lists them all).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator

from pydantic import BaseModel

from biaslab.config.fields import NamesColumns

# joins an intersection's attributes in evaluate's grid (biaslab.data.group_keys.SEP, which
# brings numpy and pandas: tests/test_columns.py keeps the two equal)
SEP = "&"


def column_keys(params: type[BaseModel]) -> list[tuple[str, NamesColumns]]:
    """Every key of ``params`` (:class:`~biaslab.config.Params`) that names columns, and its mark.

    Keys are dotted as in params.yaml: ``evaluate.groups``, ``split.train_composition.attribute``
    (an entry of a mapping), ``report.criteria[].attributes`` (a field of each item of a list).
    """
    found = []
    for name, info in params.model_fields.items():
        mark = _mark(info)
        if mark is not None:
            found.append((name + (f".{mark.entry}" if mark.entry else ""), mark))
            continue
        nested, is_list = _nested_model(info.annotation)
        if nested is not None:
            found += [(f"{name}{'[]' if is_list else ''}.{key}", m)
                      for key, m in column_keys(nested)]
    return found


def named_columns(params: BaseModel) -> Iterator[tuple[str, NamesColumns, list[str]]]:
    """(key, mark, names) of every marked field of ``params`` that names at least one column.

    The key is the one of :func:`column_keys`, a list's item numbered (``report.criteria[1].
    attributes``).
    """
    for name, info in type(params).model_fields.items():
        value, mark = getattr(params, name), _mark(info)
        if mark is not None:
            names = [mark.prefix + n for n in _names(value, mark.entry)]
            if names:
                yield name + (f".{mark.entry}" if mark.entry else ""), mark, names
        elif isinstance(value, BaseModel):
            yield from ((f"{name}.{k}", m, n) for k, m, n in named_columns(value))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from ((f"{name}[{i}].{k}", m, n) for k, m, n in named_columns(item))


def check_columns(params, columns: Iterable[str], *, where: str = "the index") -> None:
    """Raise ValueError, one line, when a key of ``params`` names a column that is not there.

    Parameters
    ----------
    params : Params
        The whole validated params.yaml.
    columns : iterable of str
        The columns the index has (prepare's, joined with bias's when it has run).
    where : str
        The table, in the message: ``the index (after bias)``.

    Notes
    -----
    Columns that will exist count as there: ``s`` while ``bias.kind`` is not ``none`` (bias
    draws it). Without it, ``s`` is accepted only by the keys whose stage leaves it out
    (``drops_s``: ``split.stratify``, ``audit.attributes``). Keys of scope ``evaluated`` name
    an attribute evaluate compares: one of ``evaluate.groups`` or, with ``evaluate.intersect``,
    their intersection (``s&sex``).

    The message names each bad key and its missing columns, then the columns there are:
    ``evaluate.groups: column 'sex' not in the index (after bias); columns: ['row', ...]``.
    """
    columns = list(columns)
    drawn = params.bias.kind != "none"
    present = set(columns) | ({"s"} if drawn else set())
    compared = evaluated_attributes(params.evaluate.groups, params.evaluate.intersect)
    absent, unknown = [], []  # "KEY: column 'x'" pieces; whole lines about evaluate's attributes
    no_s = False  # a key needs s, which bias.kind: none does not draw
    for key, mark, names in named_columns(params):
        if mark.scope == "evaluated":
            missing = [n for n in names if n not in compared]
            if missing:
                unknown.append(f"{key}: {_listed('attribute', missing)} not among those "
                               f"evaluate compares {compared}")
            continue
        missing = [n for n in names if n not in present and not (n == "s" and mark.drops_s)]
        if missing:
            absent.append(f"{key}: {_listed('column', missing)}")
            no_s = no_s or "s" in missing
    if absent:
        absent = [", ".join(absent) + f" not in {where}"
                  + ("; bias.kind: none draws no s" if no_s else "") + f"; columns: {columns}"]
    if absent or unknown:
        raise ValueError("; ".join(absent + unknown))


def checked_params(params: type[BaseModel]) -> list[str]:
    """The params.yaml keys (``section.field``) :func:`check_columns` reads, for ``params``
    (:class:`~biaslab.config.Params`): the stage that runs it depends on them (dvc.yaml), so
    that changing one reruns the check."""
    marked = column_keys(params)
    keys = {".".join(key.split("[")[0].split(".")[:2]) for key, _ in marked}
    if any(mark.scope == "evaluated" for _, mark in marked):
        keys |= {"evaluate.groups", "evaluate.intersect"}
    return sorted(keys | {"bias.kind"})


def evaluated_attributes(groups: list[str], intersect: bool) -> list[str]:
    """The attributes evaluate's grid compares: each group, and their intersection (``s&sex``)
    with ``intersect`` and two or more."""
    return list(groups) + ([SEP.join(groups)] if intersect and len(groups) > 1 else [])


def _mark(info) -> NamesColumns | None:
    return next((m for m in info.metadata if isinstance(m, NamesColumns)), None)


def _names(value, entry: str | None) -> list[str]:
    """The column names in a marked field's value (none: null, an empty list or mapping)."""
    if entry is not None:
        value = value.get(entry) if isinstance(value, dict) else None
        return [] if value is None else [str(value)]
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _listed(word: str, names: list[str]) -> str:
    return f"{word}{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"


def _nested_model(annotation) -> tuple[type[BaseModel] | None, bool]:
    """The pydantic model inside ``annotation`` (M, list[M], M | None), and whether a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and args:
        inner, _ = _nested_model(args[0])
        return inner, inner is not None
    for arg in args:  # M | None
        inner, is_list = _nested_model(arg)
        if inner is not None:
            return inner, is_list
    return None, False
