"""The parameter reference (docs/parameters.md), generated from biaslab's pydantic models.

An mkdocs hook (``hooks:`` in mkdocs.yml): at build time it replaces the line
``<!-- params-reference -->`` of docs/parameters.md with one table per params.yaml section,
walked from :class:`biaslab.config.Params` (each field's name, default, allowed values and
``Field(description=...)``), so the page cannot drift from the models. The repository's
params.yaml is read too, to show where it differs from a model default.

:func:`render_reference` is a pure function of the model (tests/test_docs.py calls it on
models with a field more or less). Only ``biaslab.config``'s exports are imported: the modules
behind them may be split or moved.
"""

from __future__ import annotations

import logging
import types
import typing
from pathlib import Path

from pydantic import BaseModel

MARKER = "<!-- params-reference -->"
PAGE = "parameters.md"

log = logging.getLogger("mkdocs.hooks.params_reference")


# ---- the mkdocs side --------------------------------------------------------------------------

def on_page_markdown(markdown: str, page, config, files) -> str:
    """Put the generated tables in place of :data:`MARKER` on :data:`PAGE`."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        log.warning("%s: the line %s is missing; the parameter reference is not generated",
                    PAGE, MARKER)
        return markdown
    from biaslab.config import Params, load_params

    root = Path(config["config_file_path"]).parent
    values = load_params(root / "params.yaml")
    reference = render_reference(Params, values)
    for key in missing_descriptions(Params):
        # a warning fails `mkdocs build --strict`: every key is documented
        log.warning("params reference: %s has no Field(description=...)", key)
    return markdown.replace(MARKER, reference)


# ---- the reference, from the models -----------------------------------------------------------

def render_reference(params: type[BaseModel], values: dict | None = None) -> str:
    """Markdown: for each section of ``params``, a heading and a table of its keys.

    Parameters
    ----------
    params
        The root model of params.yaml: one field per section, each a pydantic model.
    values
        The raw params.yaml mapping (``load_params``), or None: where its value of a key
        differs from the model default, the default column says so.

    Returns
    -------
    str
        One ``## section`` per field of ``params``, in their order, each with a table of
        ``key | default | allowed | meaning`` rows (nested models, such as a list of criteria,
        get rows ``section.key[].field``).
    """
    from biaslab.config import column_keys

    values = values or {}
    checked = {key.removesuffix(f".{mark.entry}"): (f"; its {mark.entry} " if mark.entry else "; ")
               + _CHECKED[mark.scope] for key, mark in column_keys(params)}
    parts = []
    for name, field in params.model_fields.items():
        model = field.annotation
        parts.append(f"## {name} {{#{name}}}\n")
        intro = _docstring(model, name) or field.description
        if intro:
            parts.append(_escape(_sentence(intro)) + "\n")
        raw = values.get(name) if isinstance(values.get(name), dict) else {}
        parts.append(_table(model, name, raw, checked))
    return "\n".join(parts)


def reference_keys(params: type[BaseModel]) -> list[str]:
    """Every dotted key the reference lists (``bias.p0``, ``report.criteria[].figure``)."""
    return [key for key, _, _ in _walk(params)]


def missing_descriptions(params: type[BaseModel]) -> list[str]:
    """The keys whose field has no description."""
    return [key for key, info, _ in _walk(params) if not info.description]


def _walk(params: type[BaseModel]):
    """(dotted key, FieldInfo, model) of every field of every section, nested models too."""
    for name, section in params.model_fields.items():
        yield from _fields(section.annotation, name)


def _fields(model: type[BaseModel], prefix: str):
    for key, info in model.model_fields.items():
        yield f"{prefix}.{key}", info, model
        nested, is_list = _nested_model(info.annotation)
        if nested is not None:
            yield from _fields(nested, f"{prefix}.{key}" + ("[]" if is_list else ""))


def _table(model: type[BaseModel], prefix: str, raw: dict, checked: dict[str, str]) -> str:
    schemas = _property_schemas(model)
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, info, owner in _fields(model, prefix):
        leaf = key.rsplit(".", 1)[1]
        schema = schemas[owner].get(leaf, {})
        default = _default(info)
        cell = f"`{_yaml(default)}`" if default is not _REQUIRED else "required"
        top = key[len(prefix) + 1:]
        if owner is model and top in raw and _differs(raw[top], default):
            cell += f" (params.yaml: `{_yaml(raw[top])}`)"
        meaning = (info.description or "") + checked.get(key, "")
        rows.append(f"| `{key}` | {_cell(cell)} | {_cell(_allowed(schema))} | "
                    f"{_cell(_escape(meaning))} |")
    return "\n".join(rows) + "\n"


def _property_schemas(model: type[BaseModel]) -> dict[type[BaseModel], dict]:
    """Each model met under ``model`` (itself, nested ones): its properties' JSON schemas."""
    out = {model: model.model_json_schema()["properties"]}
    for info in model.model_fields.values():
        nested, _ = _nested_model(info.annotation)
        if nested is not None:
            out.update(_property_schemas(nested))
    return out


def _nested_model(annotation) -> tuple[type[BaseModel] | None, bool]:
    """The pydantic model inside ``annotation`` (M, list[M], M | None), and whether a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and args:
        inner, _ = _nested_model(args[0])
        return inner, inner is not None
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            inner, is_list = _nested_model(arg)
            if inner is not None:
                return inner, is_list
    return None, False


# ---- words ------------------------------------------------------------------------------------

_REQUIRED = object()
# after the meaning of a key that names columns (biaslab.config.columns), by what they name
_CHECKED = {
    "index": "names columns of the index, checked by split before any training",
    "evaluated": "names attributes evaluate compares, checked by split before any training",
}
_TYPES = {"integer": "integer", "number": "number", "string": "text", "boolean": "true or false",
          "null": "null"}


def _default(info):
    if info.is_required():
        return _REQUIRED
    return info.get_default(call_default_factory=True)


def _differs(value, default) -> bool:
    return _plain(value) != _plain(default)


def _plain(value):
    """``value`` as plain data: models as their set fields, ints and floats alike."""
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(exclude_defaults=True))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _yaml(value) -> str:
    """``value`` as params.yaml would spell it, on one line (flow style)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_defaults=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '""' if value == "" else value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return repr(value)


def _allowed(schema: dict) -> str:
    """What a value may be, in words, from the field's JSON schema."""
    if not isinstance(schema, dict):  # additionalProperties: true
        return ""
    if "anyOf" in schema:
        kinds = [_allowed(s) for s in schema["anyOf"]]
        return " or ".join(dict.fromkeys(kinds))
    if "$ref" in schema:
        return "a mapping (its keys below)"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        words = _list_words(schema)
        items = schema.get("items", {})
        item = "mappings (keys below)" if "$ref" in items else _plural(_allowed(items))
        return f"{words} of {item}" if item else words
    if kind == "object":
        keys = schema.get("required") or schema.get("propertyNames", {}).get("enum")
        value = _allowed(schema.get("additionalProperties", {})) or "any value"
        if keys:
            return f"a mapping of {', '.join(f'`{k}`' for k in keys)} to {value}"
        return f"a mapping of text to {value}" if value != "any value" else "a mapping"
    return _bounds(_TYPES.get(kind, kind or ""), schema)


def _list_words(schema: dict) -> str:
    lo, hi = schema.get("minItems"), schema.get("maxItems")
    if lo is not None and lo == hi:
        words = f"a list of exactly {lo}"
    elif lo:
        words = "a non-empty list" if lo == 1 else f"a list of at least {lo}"
    else:
        words = "a list"
    return words + (" without repeats" if schema.get("uniqueItems") else "")


def _plural(words: str) -> str:
    for one, many in (("integer", "integers"), ("number", "numbers"), ("one of", "each one of")):
        if words.startswith(one):
            return many + words[len(one):]
    return words


def _bounds(kind: str, schema: dict) -> str:
    lo = ("≥", schema["minimum"]) if "minimum" in schema else (
        (">", schema["exclusiveMinimum"]) if "exclusiveMinimum" in schema else None)
    hi = ("≤", schema["maximum"]) if "maximum" in schema else (
        ("<", schema["exclusiveMaximum"]) if "exclusiveMaximum" in schema else None)
    if lo and hi:
        left = "[" if lo[0] == "≥" else "("
        right = "]" if hi[0] == "≤" else ")"
        return f"{kind} in {left}{lo[1]}, {hi[1]}{right}"
    if lo or hi:
        sign, bound = lo or hi
        return f"{kind} {sign} {bound}"
    return kind


def _docstring(model: type[BaseModel], name: str) -> str:
    """The first paragraph of the section's docstring, without its ``name:`` lead."""
    doc = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
    return doc[len(name) + 1:].strip() if doc.startswith(f"{name}:") else doc


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[0].upper() + text[1:] if text else text
    return text if text.endswith((".", "!", "?")) else text + "."


def _escape(text: str) -> str:
    """Prose from the models as Markdown text: no emphasis, links or HTML by accident."""
    for char in "\\`*_[]":
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    """A table cell: ``|`` escaped, so a ``none | sgd`` in a description stays in its cell."""
    return text.replace("|", "\\|")
