"""ConfigError, and pydantic's ValidationError told as one line per bad key.

Every message reads ``params.yaml: KEY = VALUE is not allowed; expected WHAT``, KEY the full
dotted key (``split.fractions.train``), as the stages print it. Validators raise
:func:`invalid`; pydantic's own errors (wrong type, unknown key) are told here.
"""

from __future__ import annotations

import difflib
import types
import typing

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A params.yaml value that is missing, unknown, of the wrong type or out of range."""

    def __init__(self, message: str, lines: dict[str, str] | None = None):
        super().__init__(message)
        self.lines = lines or {message: message}  # each bad key: its own line

    @classmethod
    def of(cls, lines: dict[str, str]) -> ConfigError:
        """The first line, then how many more keys are bad, and which: one line in all."""
        first, *others = lines.values()
        more = f" (and {len(others)} more: {', '.join(list(lines)[1:])})" if others else ""
        return cls(first + more, lines)


def fail(key: str, value, expected: str) -> typing.NoReturn:
    """Raise the one-line :class:`ConfigError` about ``key`` (outside pydantic validation)."""
    raise ConfigError(f"params.yaml: {key} = {_show(value)} is not allowed; expected {expected}")


def invalid(expected: str, *, key: str = "", value=None) -> PydanticCustomError:
    """The error a validator raises: ``expected`` is what is allowed.

    A model validator names the field (``key``, dotted below the model) and its ``value``; a
    field validator names neither, pydantic knows them.
    """
    return PydanticCustomError("config", "expected {expected}",
                               {"expected": expected, "key": key, "value": value})


def to_config_error(exc: ValidationError, raw, model: type[BaseModel],
                    prefix: tuple[str, ...] = ()) -> ConfigError:
    """``exc``, raised validating ``raw`` as ``model``, as one line per bad key.

    ``prefix`` is the key of ``model`` in params.yaml: ``("train",)`` for a section on its own,
    ``()`` for the whole file.
    """
    lines: dict[str, str] = {}  # bad key: its line
    for error in exc.errors():
        nested = error.get("ctx", {}).get("error")
        if isinstance(nested, ConfigError):  # told already, by a section's __init__
            for key, line in nested.lines.items():
                lines.setdefault(key, line)
            continue
        key, value, expected = _explain(error, raw, model, prefix)
        lines.setdefault(key, f"params.yaml: {key} = {_show(value)} is not allowed; "
                              f"expected {expected}")
    return ConfigError.of(lines)


def _explain(error, raw, model: type[BaseModel], prefix: tuple) -> tuple[str, object, str]:
    """The full dotted key, the value and what is allowed, of one pydantic error."""
    loc = error["loc"]
    if error["type"] == "config":  # from invalid(); a list index is no part of the key
        ctx = error["ctx"]
        parts = [*prefix, *(part for part in loc if isinstance(part, str))]
        if ctx["key"]:  # a model validator's, about one of the model's fields
            return ".".join([*parts, ctx["key"]]), ctx["value"], ctx["expected"]
        return ".".join(parts), error["input"], ctx["expected"]
    if error["type"] == "extra_forbidden":
        owner = ".".join((*prefix, *loc[:-1]))
        known = list(_model_at(model, loc[:-1]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ": " + ", ".join(known)
        where = f"a known key of {owner}" if owner else "a known section"
        return ".".join((*prefix, *map(str, loc))), error["input"], where + hint
    # a wrong type, anywhere inside a field: told about the field as a whole
    path, annotation = _field(model, loc)
    key, value = ".".join((*prefix, *map(str, path))), _lookup(raw, path, error["input"])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return key, value, "a mapping of keys to values"
    return key, value, f"a value of type {type_name(annotation)}"


def _model_at(model: type[BaseModel], loc) -> type[BaseModel]:
    for part in loc:
        model = model.model_fields[part].annotation
    return model


def _field(model: type[BaseModel], loc) -> tuple[list, object]:
    """The leading part of ``loc`` down to the first field that is not a model, and its type."""
    path: list = []
    for part in loc:
        path.append(part)
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return path, object
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return path, field.annotation
        model = field.annotation
    return path, model


def _lookup(raw, path, default):
    """The value at ``path`` in the raw mapping (what the user wrote), else ``default``."""
    for part in path:
        if not isinstance(raw, dict) or part not in raw:
            return default
        raw = raw[part]
    return raw


def type_name(annotation) -> str:
    """``list[int]``, ``float | None``: an annotation as the user reads it, without metadata."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(map(type_name, args))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(map(type_name, args))}]"
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:76] + " ..."
