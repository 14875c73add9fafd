"""The field types of params.yaml: pydantic constraints, each with the words of its error.

A constraint given to pydantic (``ge``, ``gt``, ``le``, ``lt``, ``min_length``) is checked by
pydantic and written into the JSON schema; :func:`bounded` only replaces pydantic's wording
with ours (``expected a probability in [0, 1]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, WrapValidator

from biaslab.config.errors import invalid

# pydantic's errors for a value out of its bounds (NaN and infinity included)
_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal",
                 "finite_number", "too_short", "too_long"}


def bounded(kind, expected: str, **constraints):
    """``kind`` within pydantic's ``constraints``; outside them reads ``expected EXPECTED``.

    Bounds on the items of a list or a mapping count as bounds of the whole value.
    """
    def check(value, handler):
        try:
            return handler(value)
        except ValidationError as exc:
            if any(e["type"] in _BOUND_ERRORS for e in exc.errors()):
                raise invalid(expected) from None
            raise

    return Annotated[kind, Field(**constraints), WrapValidator(check)]


def choice(names: tuple[str, ...] | Callable[[], tuple[str, ...]]):
    """A str among ``names`` (or among what ``names()`` gives, for names known only late)."""
    def allowed() -> tuple[str, ...]:
        return names() if callable(names) else names

    def check(value: str) -> str:
        if value not in allowed():
            raise invalid("one of " + ", ".join(allowed()))
        return value

    return Annotated[str, AfterValidator(check),
                     Field(json_schema_extra=lambda schema: schema.update(enum=list(allowed())))]


def unique_list(item, what: str):
    """A non-empty list of ``item`` without repeats (``what``: the items, in the message)."""
    def check(value: list) -> list:
        if len(set(value)) != len(value):
            raise invalid("a list without repeats")
        return value

    return Annotated[bounded(list[item], f"a non-empty list of {what}", min_length=1),
                     AfterValidator(check), Field(json_schema_extra={"uniqueItems": True})]


Probability = bounded(float, "a probability in [0, 1]", ge=0, le=1)
Seed = bounded(int, "an integer >= 0", ge=0)
AtLeastOne = bounded(int, "an integer >= 1", ge=1)
Attributes = bounded(list[str], "a non-empty list of attributes", min_length=1)


@dataclass(frozen=True)
class NamesColumns:
    """The mark of a field whose value names columns of the index (``evaluate.groups``).

    :func:`biaslab.config.columns.check_columns` finds the marked fields and checks, once the
    index exists and before any model is trained, that every column they name is there.

    Attributes
    ----------
    entry : str or None
        The field is a mapping: its ``entry`` holds the one name
        (``split.train_composition.attribute``). None: the value itself is the name (a str)
        or the names (a list of str).
    scope : {"index", "evaluated"}
        What the names must be found among: the index's columns (``s`` included while
        ``bias.kind`` draws it), or the attributes evaluate compares (``evaluate.groups``, and
        their intersection ``s&sex`` with ``evaluate.intersect``).
    drops_s : bool
        The stage reading the key leaves ``s`` out, with a note, when there is none
        (``bias.kind: none``); other keys need every column they name.
    prefix : str
        The index names the column ``prefix + name`` (``data.findings: [Edema]`` is the
        column ``label_Edema``).
    """

    entry: str | None = None
    scope: Literal["index", "evaluated"] = "index"
    drops_s: bool = False
    prefix: str = ""


def names_columns(kind, *, entry: str | None = None,
                  scope: Literal["index", "evaluated"] = "index", drops_s: bool = False,
                  prefix: str = ""):
    """``kind`` marked as naming columns (:class:`NamesColumns`): ``groups:
    names_columns(Attributes) = Field(...)`` is all a new key needs to be checked."""
    return Annotated[kind, NamesColumns(entry=entry, scope=scope, drops_s=drops_s,
                                        prefix=prefix)]
