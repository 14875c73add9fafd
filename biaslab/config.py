"""Validated configuration: one frozen dataclass per params.yaml section.

``params.yaml`` flows one way: a stage reads its section, :func:`parse_section` turns it into
one of the dataclasses below (unknown keys and wrong types fail loudly, naming the key), and each
dataclass checks its own values in ``__post_init__``. Library functions then take plain keyword
arguments, never the raw dict.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SOURCES = ("digits", "nih", "folder", "imagefolder", "csv")
BIAS_KINDS = ("none", "noise_channel")
SPLIT_NAMES = ("train", "val", "test")
SCHEMES = (
    "none", "class_balanced", "group_balanced", "group_class_balanced", "reweighing",
    "undersample", "oversample", "column",
)
WEIGHT_MODES = ("loss", "sampler")
SAMPLE_CELLS = ("group", "group_class")
METHODS = ("fixed", "youden", "demographic_parity", "equal_opportunity", "equalized_odds")
PARETO_GAPS = (
    "disparate_impact", "statistical_parity_difference", "equal_opportunity_difference",
    "average_odds_difference", "equalized_odds_difference", "auc_gap",
)
MODELS = ("small_cnn", "alexnet", "resnet18", "resnet34", "resnet50")
OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")


def as_dict(config) -> dict:
    """A section's values as a plain dict (what checkpoints store and compare)."""
    return dataclasses.asdict(config)


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
    source: str = "digits"  # digits | nih | folder | imagefolder | csv
    root: str = ""  # folder of the data; relative paths from the repository root (not digits)
    negative: list[int] = field(default_factory=lambda: [1])  # digits: classes labelled 0
    positive: list[int] = field(default_factory=lambda: [7])  # digits: classes labelled 1
    finding: str = "any"  # nih: "any" (any finding vs No Finding) or one finding vs the rest
    views: list[str] = field(default_factory=list)  # nih/csv: keep these views only ([]: all)
    positive_folder: str = "malade"  # folder: the class sub-folder labelled 1
    positive_class: str = ""  # imagefolder: class folder labelled 1
    negative_class: str = "rest"  # imagefolder: class folder labelled 0, or "rest" (one-vs-rest)
    path_column: str = "path"  # csv: columns of the table (metadata.csv under data.root)
    label_column: str = "label"
    patient_column: str = "patient_id"
    sex_column: str = "sex"
    age_column: str = "age"
    attributes: list[str] = field(default_factory=list)  # csv/folder: more columns to keep
    table: str = "metadata.csv"  # csv: the table's file name under data.root
    age_bins: list[float] = field(default_factory=lambda: [40.0, 60.0, 80.0])  # age_group cuts
    options: dict[str, str | int | float | list] = field(default_factory=dict)  # nested form

    def __post_init__(self):
        if self.options:  # data.options: {finding: X, ...} is the same as the flat keys
            flat = {k: v for k, v in self.options.items()}
            object.__setattr__(self, "options", {})
            merged = parse_section("data", {**dataclasses.asdict(self), **flat})
            for f in dataclasses.fields(self):
                object.__setattr__(self, f.name, getattr(merged, f.name))
            return
        _check_choice("data.source", self.source, SOURCES)
        for key in ("negative", "positive"):
            values = getattr(self, key)
            if not values or any(not 0 <= d <= 9 for d in values):
                _fail(f"data.{key}", values, "a non-empty list of digits 0..9")
        if set(self.negative) & set(self.positive):
            _fail("data.positive", self.positive, "digits not also listed in data.negative")
        if self.source != "digits" and not self.root:
            _fail("data.root", self.root, f"the folder of the {self.source} data (a path)")
        if self.source == "imagefolder" and not self.positive_class:
            _fail("data.positive_class", self.positive_class, "a class folder name")
        if self.source == "imagefolder" and self.negative_class == self.positive_class:
            _fail("data.negative_class", self.negative_class,
                  "a class other than data.positive_class, or rest")
        if list(self.age_bins) != sorted(set(self.age_bins)) or any(
                b <= 0 for b in self.age_bins):
            _fail("data.age_bins", self.age_bins, "increasing positive ages, e.g. [40, 60, 80]")


@dataclass(frozen=True)
class PrepareConfig:
    size: int = 32  # side of the square grayscale images, in pixels
    max_rejected_fraction: float = 0.05  # more rejected images than this fails the stage
    workers: int = 0  # decoding processes (0: one per core)

    def __post_init__(self):
        if not 8 <= self.size <= 1024:
            _fail("prepare.size", self.size, "an integer in [8, 1024]")
        _check_unit("prepare.max_rejected_fraction", self.max_rejected_fraction)
        if self.workers < 0:
            _fail("prepare.workers", self.workers, "an integer >= 0 (0: one per core)")


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
    use_source: bool = False  # keep the source's own split (index column source_split)
    min_stratum: int = 5  # smaller strata are merged into a coarser one, with a warning
    train_size: int = 0  # subsample the training split to this many images (0: keep all)
    train_composition: dict[str, str | float | int] = field(default_factory=dict)

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
        if self.min_stratum < 1:
            _fail("split.min_stratum", self.min_stratum, "an integer >= 1")
        if self.train_size < 0:
            _fail("split.train_size", self.train_size, "an integer >= 0 (0: keep all)")
        comp = self.train_composition
        if comp:
            if set(comp) != {"attribute", "value", "share"}:
                _fail("split.train_composition", comp,
                      "a mapping with exactly attribute, value and share (or {})")
            if isinstance(comp["share"], str) or not 0 <= comp["share"] <= 1:
                _fail("split.train_composition.share", comp["share"], "a share in [0, 1]")
            if self.train_size == 0:
                _fail("split.train_size", 0, "a size > 0 when split.train_composition is set")


@dataclass(frozen=True)
class AuditConfig:
    attributes: list[str] = field(default_factory=lambda: ["s"])  # columns to tabulate
    min_group_size: int = 30  # warn about groups smaller than this in any split
    level: float = 0.95  # confidence level of the Wilson intervals
    simpson_min_effect: float = 0.02  # prevalence difference that counts as an association

    def __post_init__(self):
        if self.min_group_size < 1:
            _fail("audit.min_group_size", self.min_group_size, "an integer >= 1")
        if not 0.5 <= self.level < 1.0:
            _fail("audit.level", self.level, "a confidence level in [0.5, 1)")
        _check_unit("audit.simpson_min_effect", self.simpson_min_effect)


@dataclass(frozen=True)
class WeightsConfig:
    schemes: list[str] = field(default_factory=lambda: ["none", "reweighing"])
    groups: list[str] = field(default_factory=lambda: ["s"])  # attributes defining a group
    mode: str = "loss"  # loss (weighted loss) | sampler (rows drawn in proportion to weight)
    sample_by: str = "group"  # undersample/oversample cells: group | group_class
    column: str | None = None  # metadata column holding the weights of scheme `column`
    seed: int = 0  # undersample/oversample draws and the sampler's draws

    def __post_init__(self):
        if not self.schemes:
            _fail("weights.schemes", self.schemes, "a non-empty list of schemes")
        for scheme in self.schemes:
            _check_choice("weights.schemes", scheme, SCHEMES)
        if len(set(self.schemes)) != len(self.schemes):
            _fail("weights.schemes", self.schemes, "a list without repeats")
        if not self.groups:
            _fail("weights.groups", self.groups, "a non-empty list of attributes")
        _check_choice("weights.mode", self.mode, WEIGHT_MODES)
        _check_choice("weights.sample_by", self.sample_by, SAMPLE_CELLS)
        if "column" in self.schemes and not self.column:
            _fail("weights.column", self.column,
                  "the name of a metadata column when weights.schemes lists 'column'")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "small_cnn"  # small_cnn (CPU default) | alexnet | resnet18 | resnet34 | resnet50
    pretrained: str | None = None  # local torchvision state-dict file (never downloaded)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | sgd
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    scheduler: str = "none"  # none | step (StepLR: lr *= step_gamma every step_size epochs)
    step_size: int = 7
    step_gamma: float = 0.1
    loss: str = "bce"  # bce | focal (Lin et al. 2017)
    focal_gamma: float = 2.0
    focal_alpha: float | None = None  # weight of the positive class in focal loss; null: none
    patience: int = 0  # early stopping after this many epochs without a better val loss; 0: off
    augment: bool = False  # random horizontal flip and small random crops (training only)
    width: int = 16  # channels of the first conv layer of small_cnn
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model
    deterministic: bool = True  # deterministic algorithms (a little slower on CUDA)
    seed: int = 0

    def __post_init__(self):
        _check_choice("train.model", self.model, MODELS)
        _check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("train.device", self.device, DEVICES)
        _check_choice("train.scheduler", self.scheduler, ("none", "step"))
        _check_choice("train.loss", self.loss, ("bce", "focal"))
        for key in ("epochs", "batch_size", "lr", "width", "step_size", "step_gamma"):
            _check_positive(f"train.{key}", getattr(self, key))
        for key in ("weight_decay", "momentum", "focal_gamma", "patience"):
            if getattr(self, key) < 0:
                _fail(f"train.{key}", getattr(self, key), "a number >= 0")
        if self.focal_alpha is not None:
            _check_unit("train.focal_alpha", self.focal_alpha)


@dataclass(frozen=True)
class PostprocessConfig:
    methods: list[str] = field(default_factory=lambda: ["fixed", "youden"])
    fixed_threshold: float = 0.5
    groups: list[str] = field(default_factory=lambda: ["s"])  # joint value = group (per-group)
    tolerance: float = 0.0  # allowed gap of the constrained rate between groups (0: equal)
    seed: int = 0  # the randomised decisions of equalized_odds

    def __post_init__(self):
        if not self.methods:
            _fail("postprocess.methods", self.methods, "a non-empty list of methods")
        for method in self.methods:
            _check_choice("postprocess.methods", method, METHODS)
        if len(set(self.methods)) != len(self.methods):
            _fail("postprocess.methods", self.methods, "a list without repeats")
        _check_unit("postprocess.fixed_threshold", self.fixed_threshold)
        if not self.groups:
            _fail("postprocess.groups", self.groups, "a non-empty list of attributes")
        _check_unit("postprocess.tolerance", self.tolerance)


@dataclass(frozen=True)
class EvaluateConfig:
    groups: list[str] = field(default_factory=lambda: ["s"])
    min_group_size: int = 1  # a group with fewer test rows is an error, not a silent NaN
    shift_p: float = 0.5  # P(S=1) in the shifted test set, independent of the label
    n_boot: int = 1000  # bootstrap resamples for the confidence intervals
    level: float = 0.95
    seed: int = 0
    intersect: bool = True  # also evaluate the intersection of all evaluate.groups
    bins: int = 256  # score bins of the bootstrap's AUC and calibration error
    pareto_gap: str = "disparate_impact"  # the fairness gap of the Pareto front in grid.csv

    def __post_init__(self):
        if not self.groups:
            _fail("evaluate.groups", self.groups, "a non-empty list of attributes")
        if not 10 <= self.bins <= 4096:
            _fail("evaluate.bins", self.bins, "an integer in [10, 4096]")
        _check_choice("evaluate.pareto_gap", self.pareto_gap, PARETO_GAPS)
        if not 0.0 < self.shift_p < 1.0:  # 0 or 1 would leave the shifted set one group
            _fail("evaluate.shift_p", self.shift_p, "a probability in (0, 1)")
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


class _Loader(yaml.SafeLoader):
    """SafeLoader reading floats as YAML 1.2 does: PyYAML (YAML 1.1) reads ``1e-3`` as a
    string, and ``dvc exp run -S train.lr=1e-3`` writes exactly that."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
               re.VERBOSE),
    list("-+0123456789."),
)


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read params.yaml into a dict of raw sections, with a clear error when it is unreadable."""
    path = Path(path)
    try:
        params = yaml.load(path.read_text(), Loader=_Loader) or {}
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
