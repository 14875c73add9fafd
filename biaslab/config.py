"""Validated configuration: one frozen dataclass per params.yaml section.

``params.yaml`` flows one way: a stage reads its section, :func:`parse_section` turns it into
one of the dataclasses below (unknown keys and wrong types fail loudly, naming the key), and each
dataclass checks its own values in ``__post_init__``. Library functions then take plain keyword
arguments, never the raw dict.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SOURCES = ("digits",)
BIAS_KINDS = ("none", "noise_channel")
SPLIT_NAMES = ("train", "val", "test")
SCHEMES = ("none", "class_balanced", "group_balanced", "group_class_balanced", "reweighing")
METHODS = ("fixed", "youden")
MODELS = ("small_cnn",)
OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A params.yaml value that is missing, unknown, of the wrong type or out of range."""


def _fail(key: str, value, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"params.yaml: {key} = {value!r} is not allowed; expected {allowed}")


def _check_choice(key: str, value, choices) -> None:
    if value not in choices:
        _fail(key, value, "one of " + ", ".join(map(str, choices)))


def _check_unit(key: str, value: float) -> None:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        _fail(key, value, "a probability in [0, 1]")


def _check_positive(key: str, value) -> None:
    if value <= 0:
        _fail(key, value, "a number > 0")


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"  # digits (scikit-learn's bundled handwritten digits, no download)
    negative: list[int] = field(default_factory=lambda: [1])  # digits: classes labelled 0
    positive: list[int] = field(default_factory=lambda: [7])  # digits: classes labelled 1

    def __post_init__(self):
        _check_choice("data.source", self.source, SOURCES)
        for key in ("negative", "positive"):
            values = getattr(self, key)
            if not values or any(not 0 <= d <= 9 for d in values):
                _fail(f"data.{key}", values, "a non-empty list of digits 0..9")
        if set(self.negative) & set(self.positive):
            _fail("data.positive", self.positive, "digits not also listed in data.negative")


@dataclass(frozen=True)
class PrepareConfig:
    size: int = 32  # side of the square grayscale images, in pixels

    def __post_init__(self):
        if not 8 <= self.size <= 1024:
            _fail("prepare.size", self.size, "an integer in [8, 1024]")


@dataclass(frozen=True)
class BiasConfig:
    kind: str = "noise_channel"  # none | noise_channel
    p0: float = 0.1  # P(S=1 | y=0)
    p1: float = 0.9  # P(S=1 | y=1)
    seed: int = 0

    def __post_init__(self):
        _check_choice("bias.kind", self.kind, BIAS_KINDS)
        _check_unit("bias.p0", self.p0)
        _check_unit("bias.p1", self.p1)


@dataclass(frozen=True)
class SplitConfig:
    fractions: dict[str, float] = field(
        default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2}
    )
    stratify: list[str] = field(default_factory=lambda: ["label", "s"])
    seed: int = 0

    def __post_init__(self):
        if set(self.fractions) != set(SPLIT_NAMES):
            _fail("split.fractions", self.fractions, "exactly the keys train, val, test")
        for name, frac in self.fractions.items():
            if not 0.0 < frac < 1.0:
                _fail(f"split.fractions.{name}", frac, "a fraction in (0, 1)")
        total = sum(self.fractions.values())
        if abs(total - 1.0) > 1e-6:
            _fail("split.fractions", self.fractions,
                  f"fractions summing to 1 (they sum to {total:g})")


@dataclass(frozen=True)
class AuditConfig:
    attributes: list[str] = field(default_factory=lambda: ["s"])  # columns to tabulate
    min_group_size: int = 30  # warn about groups smaller than this in any split

    def __post_init__(self):
        if self.min_group_size < 1:
            _fail("audit.min_group_size", self.min_group_size, "an integer >= 1")


@dataclass(frozen=True)
class WeightsConfig:
    schemes: list[str] = field(default_factory=lambda: ["none", "reweighing"])
    groups: list[str] = field(default_factory=lambda: ["s"])  # attributes defining a group

    def __post_init__(self):
        if not self.schemes:
            _fail("weights.schemes", self.schemes, "a non-empty list of schemes")
        for scheme in self.schemes:
            _check_choice("weights.schemes", scheme, SCHEMES)
        if len(set(self.schemes)) != len(self.schemes):
            _fail("weights.schemes", self.schemes, "a list without repeats")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "small_cnn"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | sgd
    weight_decay: float = 0.0
    width: int = 16  # channels of the first conv layer of small_cnn
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    seed: int = 0

    def __post_init__(self):
        _check_choice("train.model", self.model, MODELS)
        _check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("train.device", self.device, DEVICES)
        for key in ("epochs", "batch_size", "lr", "width"):
            _check_positive(f"train.{key}", getattr(self, key))
        if self.weight_decay < 0:
            _fail("train.weight_decay", self.weight_decay, "a number >= 0")


@dataclass(frozen=True)
class PostprocessConfig:
    methods: list[str] = field(default_factory=lambda: ["fixed", "youden"])
    fixed_threshold: float = 0.5

    def __post_init__(self):
        if not self.methods:
            _fail("postprocess.methods", self.methods, "a non-empty list of methods")
        for method in self.methods:
            _check_choice("postprocess.methods", method, METHODS)
        _check_unit("postprocess.fixed_threshold", self.fixed_threshold)


@dataclass(frozen=True)
class EvaluateConfig:
    groups: list[str] = field(default_factory=lambda: ["s"])
    min_group_size: int = 1  # a group with fewer test rows is an error, not a silent NaN
    shift_p: float = 0.5  # P(S=1) in the shifted test set, independent of the label
    n_boot: int = 1000  # bootstrap resamples for the confidence intervals
    level: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if not self.groups:
            _fail("evaluate.groups", self.groups, "a non-empty list of attributes")
        _check_unit("evaluate.shift_p", self.shift_p)
        if not 0.5 <= self.level < 1.0:
            _fail("evaluate.level", self.level, "a confidence level in [0.5, 1)")
        if self.n_boot < 0:
            _fail("evaluate.n_boot", self.n_boot, "an integer >= 0 (0 turns intervals off)")
        if self.min_group_size < 1:
            _fail("evaluate.min_group_size", self.min_group_size, "an integer >= 1")


SECTIONS = {
    "data": DataConfig,
    "prepare": PrepareConfig,
    "bias": BiasConfig,
    "split": SplitConfig,
    "audit": AuditConfig,
    "weights": WeightsConfig,
    "train": TrainConfig,
    "postprocess": PostprocessConfig,
    "evaluate": EvaluateConfig,
}


def _type_ok(value, annotation) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        key_t, val_t = typing.get_args(annotation)
        return isinstance(value, dict) and all(
            _type_ok(k, key_t) and _type_ok(v, val_t) for k, v in value.items()
        )
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    return isinstance(value, annotation)


def parse_section(name: str, raw: dict | None):
    """Build the dataclass of section ``name`` from its raw params.yaml mapping.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming ``name.key``.
    Missing keys take the defaults above.
    """
    if name not in SECTIONS:
        _fail(name, "<section>", "one of the sections " + ", ".join(SECTIONS))
    cls = SECTIONS[name]
    raw = raw or {}
    if not isinstance(raw, dict):
        _fail(name, raw, "a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in raw.items():
        if key not in known:
            _fail(f"{name}.{key}", value, "a known key: " + ", ".join(sorted(known)))
        if not _type_ok(value, hints[key]):
            _fail(f"{name}.{key}", value, f"a value of type {_type_name(hints[key])}")
    return cls(**raw)


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read params.yaml into a dict of raw sections, with a clear error when it is unreadable."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def load_section(name: str, path: str | Path = "params.yaml"):
    """Shortcut for stages: read params.yaml and return the validated section ``name``."""
    return parse_section(name, load_params(path).get(name))
