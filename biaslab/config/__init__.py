"""Validated configuration: one frozen pydantic model per params.yaml section.

``params.yaml`` flows one way: a stage calls :func:`load_section`, which validates the whole
file (so a typo anywhere stops any stage) and returns that stage's section, one of the models
below. Unknown keys, wrong types and values out of range raise :class:`ConfigError`, one line
naming the key, the value and what is allowed. Library functions then take plain keyword
arguments, never the raw dict.

The models, one module per part of the library that reads them, each section with the names
of its choices (``MODELS``, ``SCHEMES``, ...):

- :mod:`~biaslab.config.data`: ``data``, ``prepare``, ``bias``, ``split``, ``audit``;
- :mod:`~biaslab.config.model`: ``train``;
- :mod:`~biaslab.config.mitigation`: ``mitigation`` (the in-training methods' params);
- :mod:`~biaslab.config.fairness`: ``weights``, ``postprocess``, ``evaluate``;
- :mod:`~biaslab.config.explain`: ``explain``;
- :mod:`~biaslab.config.report`: ``report``;
- :mod:`~biaslab.config.sweep`: ``sweep``;
- :mod:`~biaslab.config.params`: :class:`Params`, the whole file, and the checks across
  sections; :mod:`~biaslab.config.section` their base, :mod:`~biaslab.config.fields` the field
  types they share, :mod:`~biaslab.config.errors` the errors;
- :mod:`~biaslab.config.columns`: the keys that name columns (marked with
  ``names_columns``), checked against the index once it exists (:func:`check_columns`).

The library and the stages import these names from :mod:`biaslab.config` itself.

``python -m biaslab.config --schema`` prints the JSON schema of params.yaml, generated from the
models (``params.schema.json``, which editors can check params.yaml against).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML, YAMLError

from biaslab.config.columns import check_columns, column_keys
from biaslab.config.data import (
    BIAS_KINDS,
    SOURCES,
    SPLIT_NAMES,
    AuditConfig,
    BiasConfig,
    DataConfig,
    PrepareConfig,
    SplitConfig,
)
from biaslab.config.errors import ConfigError, fail, to_config_error
from biaslab.config.explain import ExplainConfig
from biaslab.config.fairness import (
    PARETO_GAPS,
    SAMPLE_CELLS,
    SCHEMES,
    WEIGHT_MODES,
    EvaluateConfig,
    PostprocessConfig,
    WeightsConfig,
    method_names,
)
from biaslab.config.mitigation import DRO_CELLS, IN_TRAINING, MitigationConfig
from biaslab.config.model import DEVICES, LOSSES, MODELS, OPTIMIZERS, SCHEDULERS, TrainConfig
from biaslab.config.params import Params
from biaslab.config.report import ReportConfig

__all__ = [
    "BIAS_KINDS", "DEVICES", "LOSSES", "METHODS", "MODELS", "OPTIMIZERS", "PARETO_GAPS",
    "SAMPLE_CELLS", "SCHEDULERS", "SCHEMES", "SECTIONS", "SOURCES", "SPLIT_NAMES",
    "WEIGHT_MODES", "AuditConfig", "BiasConfig", "ConfigError", "DataConfig", "EvaluateConfig",
    "ExplainConfig", "Params", "PostprocessConfig", "PrepareConfig", "ReportConfig",
    "SplitConfig", "TrainConfig",
    "DRO_CELLS", "IN_TRAINING", "MitigationConfig",  # the in-training methods (mitigation)
    "WeightsConfig", "as_dict", "check_columns", "column_keys", "load_config", "load_params",
    "load_section", "params_schema", "parse_params", "parse_section", "schema_text",
]

SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation for name, field in Params.model_fields.items()
}


def __getattr__(name: str):
    # METHODS: postprocess.methods' choices, from biaslab.fairness.thresholds, imported on first use
    if name == "METHODS":
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def as_dict(config: BaseModel) -> dict:
    """A section's values as a plain dict (what checkpoints store and compare)."""
    return config.model_dump()


def parse_params(raw: dict) -> Params:
    """Validate a whole params.yaml mapping (every section; absent ones take their defaults)."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise to_config_error(exc, raw, Params) from None


def parse_section(name: str, raw: dict | None):
    """Build the model of section ``name`` from its raw params.yaml mapping.

    Unknown keys and bad values raise :class:`ConfigError` naming ``name.key``. Missing keys
    take the defaults.
    """
    if name not in SECTIONS:
        fail(name, "<section>", "one of the sections " + ", ".join(SECTIONS))
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        fail(name, raw, "a mapping of keys to values")
    return getattr(parse_params({name: raw}), name)


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read params.yaml into a dict of raw sections, with a clear error when it is unreadable.

    It is read as DVC reads it (ruamel.yaml, YAML 1.2): ``dvc exp run -S train.lr=1e-3`` writes
    ``1e-3``, a float in YAML 1.2 but a string to PyYAML (YAML 1.1).
    """
    path = Path(path)
    try:
        params = YAML(typ="safe").load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run from the repository root") from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def load_config(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params.yaml."""
    return parse_params(load_params(path))


def load_section(name: str, path: str | Path = "params.yaml"):
    """For stages: validate the whole params.yaml and return its section ``name``."""
    if name not in SECTIONS:
        fail(name, "<section>", "one of the sections " + ", ".join(SECTIONS))
    return getattr(load_config(path), name)


def params_schema() -> dict:
    """The JSON schema of params.yaml (draft 2020-12), with every key's description."""
    schema = Params.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """:func:`params_schema` as written to params.schema.json."""
    return json.dumps(params_schema(), indent=2) + "\n"
