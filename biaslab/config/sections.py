"""One frozen pydantic model per params.yaml section, and :class:`Params`, the whole file.

Each field's default is the value in the repository's params.yaml (one set of defaults for the
stages and the CLI; a test keeps them equal) and its description documents the key, in the JSON
schema too (``params.schema.json``). Values are strict: an int is not a bool, a float field
takes an int but not a quoted "0.1", and floats are finite.
"""

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from biaslab.config.errors import invalid, to_config_error
from biaslab.config.fields import (
    AtLeastOne,
    Attributes,
    Probability,
    Seed,
    bounded,
    choice,
    unique_list,
)
from biaslab.split_names import SPLITS

SOURCES = ("digits", "nih", "folder", "imagefolder", "csv")
BIAS_KINDS = ("none", "noise_channel")
SPLIT_NAMES = SPLITS
SCHEMES = (
    "none", "class_balanced", "group_balanced", "group_class_balanced", "reweighing",
    "undersample", "oversample", "column",
)
WEIGHT_MODES = ("loss", "sampler")
SAMPLE_CELLS = ("group", "group_class")
PARETO_GAPS = (
    "disparate_impact", "statistical_parity_difference", "equal_opportunity_difference",
    "average_odds_difference", "equalized_odds_difference", "auc_gap",
)
MODELS = ("small_cnn", "alexnet", "resnet18", "resnet34", "resnet50")
OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("none", "step")
LOSSES = ("bce", "focal")
DEVICES = ("auto", "cpu", "cuda")

# field types used by one section only (the shared ones are in biaslab.config.fields)
Digits = bounded(list[Annotated[int, Field(ge=0, le=9)]], "a non-empty list of digits 0..9",
                 min_length=1)
AGES = "increasing positive ages, e.g. [40, 60, 80]"


def method_names() -> tuple[str, ...]:
    """The threshold methods, in order: the names :data:`biaslab.thresholds.METHODS` registers.

    Imported when first needed: biaslab.thresholds brings numpy and pandas, which reading
    params.yaml does not need otherwise.
    """
    from biaslab.thresholds import METHODS

    return tuple(METHODS)


class Section(BaseModel):
    """A params.yaml section; built directly (``TrainConfig(lr=0.01)``), a bad value raises
    the same one-line :class:`~biaslab.config.errors.ConfigError` as in params.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    def __init__(self, **values: Any) -> None:
        # pydantic calls this too when it validates a section inside Params: the ConfigError
        # raised here then reaches to_config_error, which keeps its lines
        try:
            super().__init__(**values)
        except ValidationError as exc:
            name = next(k for k, f in Params.model_fields.items() if f.annotation is type(self))
            raise to_config_error(exc, values, type(self), (name,)) from None


class DataConfig(Section):
    """data: where the images and their labels come from (read by prepare)."""

    source: choice(SOURCES) = Field("digits", description=(
        "digits (scikit-learn's real handwritten digits, no download) | nih | folder | "
        "imagefolder | csv (README, \"Data sources\")"))
    root: str = Field("", description=(
        "folder of the data (every source but digits); a relative path is taken from the "
        "repository root"))
    age_bins: bounded(list[Annotated[float, Field(gt=0)]], AGES) = Field(
        [40.0, 60.0, 80.0], description="age_group cut points: <40, 40-59, 60-79, 80+")
    negative: Digits = Field([1], description="digits: the digits labelled 0")
    positive: Digits = Field([7], description="digits: the digits labelled 1")
    finding: str = Field("any", description=(
        "nih: any (any finding vs \"No Finding\"), or one finding vs the rest, e.g. "
        "Cardiomegaly"))
    views: list[str] = Field([], description=(
        "nih and csv: keep these views only, e.g. [PA] ([]: all)"))
    positive_folder: str = Field("malade", description=(
        "folder: the class sub-folder labelled 1 (the others are 0)"))
    positive_class: str = Field("", description="imagefolder: the class folder labelled 1")
    negative_class: str = Field("rest", description=(
        "imagefolder: the class folder labelled 0, or rest (one-vs-rest)"))
    table: str = Field("metadata.csv", description=(
        "csv (and the folder source's optional metadata table, joined on file name): the "
        "table's file name under root"))
    path_column: str = Field("path", description="csv: column of image paths, relative to root")
    label_column: str = Field("label", description="csv: column of 0/1 labels (also true/false, "
                                                   "yes/no)")
    patient_column: str = Field("patient_id", description="csv: column of patient ids")
    sex_column: str = Field("sex", description="csv: column of sex (normalised to M/F)")
    age_column: str = Field("age", description="csv: column of age (normalised to years)")
    attributes: list[str] = Field([], description=(
        "csv and folder: more columns to keep as they are, e.g. [view]"))
    options: dict[str, Any] = Field({}, description=(
        "the keys above, nested ({label_column: y} is label_column: y); they win over the "
        "flat keys"))

    @model_validator(mode="before")
    @classmethod
    def _merge_options(cls, data):
        """``options: {finding: X}`` is ``finding: X``: the nested keys, checked as the flat."""
        if isinstance(data, dict) and isinstance(data.get("options"), dict):
            flat = {key: value for key, value in data.items() if key != "options"}
            return {**flat, **data["options"]}
        return data

    @field_validator("age_bins")
    @classmethod
    def _increasing(cls, bins: list[float]) -> list[float]:
        if bins != sorted(set(bins)):
            raise invalid(AGES)
        return bins

    @model_validator(mode="after")
    def _consistent(self):
        if set(self.negative) & set(self.positive):
            raise invalid("digits not also listed in data.negative", key="positive",
                          value=self.positive)
        if self.source != "digits" and not self.root:
            raise invalid(f"the folder of the {self.source} data (a path)", key="root",
                          value=self.root)
        if self.source == "imagefolder" and not self.positive_class:
            raise invalid("a class folder name", key="positive_class", value=self.positive_class)
        if self.source == "imagefolder" and self.negative_class == self.positive_class:
            raise invalid("a class other than data.positive_class, or rest",
                          key="negative_class", value=self.negative_class)
        return self


class PrepareConfig(Section):
    """prepare: decoding the images into one array."""

    size: bounded(int, "an integer in [8, 1024]", ge=8, le=1024) = Field(32, description=(
        "side of the square grayscale images, in pixels (256 for real X-rays on a GPU)"))
    max_rejected_fraction: Probability = Field(0.05, description=(
        "more unreadable or missing images than this fails the stage (nothing written)"))
    workers: bounded(int, "an integer >= 0 (0: one per core)", ge=0) = Field(0, description=(
        "decoding processes (0: one per core)"))
    min_side: bounded(int, "an integer in [1, 4096]", ge=1, le=4096) = Field(8, description=(
        "an image whose shorter side has fewer pixels is rejected (too small)"))
    max_aspect: bounded(float, "a number >= 1", ge=1.0) = Field(10.0, description=(
        "an image whose longer side is more than this many times its shorter side is "
        "rejected (extreme aspect ratio)"))


class BiasConfig(Section):
    """bias: the injected bias variable S ~ Bernoulli(p_y)."""

    kind: choice(BIAS_KINDS) = Field("noise_channel", description=(
        "none | noise_channel (a 2nd input channel: 0 if S=0, N(0, I) noise if S=1)"))
    p0: Probability = Field(0.1, description="P(S=1 | y=0)")
    p1: Probability = Field(0.9, description=(
        "P(S=1 | y=1): |p1 - p0| is how much S tells about the label"))
    seed: Seed = Field(0, description="seed of S and of each image's (fixed) noise")


class SplitConfig(Section):
    """split: train, val and test, stratified, patients never straddling two."""

    fractions: dict[str, bounded(float, "a fraction in (0, 1)", gt=0, lt=1)] = Field(
        {"train": 0.6, "val": 0.2, "test": 0.2},
        description="the fractions of train, val and test; they sum to 1",
        json_schema_extra={"required": list(SPLIT_NAMES), "propertyNames": {"enum": SPLIT_NAMES}})
    stratify: list[str] = Field(["label", "s"], description=(
        "strata: joint values of these columns (s is skipped when bias.kind is none); patients "
        "never straddle splits"))
    seed: Seed = Field(0, description="seed of the split")
    use_source: bool = Field(False, description=(
        "keep the source's own split (index column source_split, e.g. folder's train/valid/test "
        "folders)"))
    min_stratum: AtLeastOne = Field(5, description=(
        "a stratum with fewer units (patients) is merged into a coarser one, with a warning"))
    train_size: bounded(int, "an integer >= 0 (0: keep all)", ge=0) = Field(0, description=(
        "subsample the training split to this many images (0: all of it)"))
    train_composition: dict[str, str | float | int] = Field({}, description=(
        "with train_size: the share of one attribute value in the subsample, e.g. "
        "{attribute: sex, value: F, share: 0.5} ({}: none); val and test untouched"))

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, fractions: dict[str, float]) -> dict[str, float]:
        if set(fractions) != set(SPLIT_NAMES):
            raise invalid("exactly the keys train, val, test")
        total = sum(fractions.values())
        if abs(total - 1.0) > 1e-6:  # 0.6 + 0.2 + 0.2 is 1.0000000000000002
            raise invalid(f"fractions summing to 1 (they sum to {total:g})")
        return fractions

    @model_validator(mode="after")
    def _composition(self):
        comp = self.train_composition
        if not comp:
            return self
        if set(comp) != {"attribute", "value", "share"}:
            raise invalid("a mapping with exactly attribute, value and share (or {})",
                          key="train_composition", value=comp)
        if isinstance(comp["share"], str) or not 0 <= comp["share"] <= 1:
            raise invalid("a share in [0, 1]", key="train_composition.share", value=comp["share"])
        if self.train_size == 0:
            raise invalid("a size > 0 when split.train_composition is set", key="train_size",
                          value=0)
        return self


class AuditConfig(Section):
    """audit: the dataset audit (group sizes, prevalences, Simpson check)."""

    attributes: list[str] = Field(["s"], description=(
        "columns to tabulate, and their pairwise intersections (any index column: s, digit, "
        "sex, age_group, ...)"))
    min_group_size: AtLeastOne = Field(30, description="warn about smaller groups in any split")
    level: bounded(float, "a confidence level in [0.5, 1)", ge=0.5, lt=1) = Field(
        0.95, description="confidence level of the Wilson intervals")
    simpson_min_effect: Probability = Field(0.02, description=(
        "prevalence difference that counts as an association (Simpson check)"))


class WeightsConfig(Section):
    """weights: the sample weights, one scheme per model."""

    schemes: unique_list(choice(SCHEMES), "schemes") = Field(["none", "reweighing"], description=(
        "one model per scheme: none | class_balanced | group_balanced | group_class_balanced | "
        "reweighing | undersample | oversample | column"))
    groups: Attributes = Field(["s"], description=(
        "attributes whose joint value (intersection) is the group of the group schemes"))
    mode: choice(WEIGHT_MODES) = Field("loss", description=(
        "loss (weights multiply the loss) | sampler (each epoch draws the training rows with "
        "replacement, P proportional to weight)"))
    sample_by: choice(SAMPLE_CELLS) = Field("group", description=(
        "cells of undersample and oversample: group | group_class"))
    column: str | None = Field(None, description=(
        "metadata column holding the weights of scheme column (the course's --weights_col)"))
    seed: Seed = Field(0, description="seed of undersample/oversample and the sampler's draws")

    @model_validator(mode="after")
    def _column_named(self):
        if "column" in self.schemes and not self.column:
            raise invalid("the name of a metadata column when weights.schemes lists 'column'",
                          key="column", value=self.column)
        return self


class TrainConfig(Section):
    """train: the CNN and its training recipe."""

    model: choice(MODELS) = Field("small_cnn", description=(
        "small_cnn (CPU) | alexnet | resnet18 | resnet34 | resnet50 (torchvision, GPU)"))
    pretrained: str | None = Field(None, description=(
        "local torchvision state-dict file for the resnets and alexnet (never downloaded)"))
    epochs: AtLeastOne = Field(10, description="training epochs")
    batch_size: AtLeastOne = Field(32, description="images per batch")
    lr: bounded(float, "a finite number > 0", gt=0) = Field(0.002, description="learning rate")
    optimizer: choice(OPTIMIZERS) = Field("adam", description=(
        "adam | sgd (the seed recipe: lr 0.01, momentum 0.9, weight_decay 5e-4)"))
    momentum: bounded(float, "a finite number >= 0", ge=0) = Field(0.9, description="sgd only")
    weight_decay: bounded(float, "a finite number >= 0", ge=0) = Field(0.0, description=(
        "L2 penalty of the optimizer"))
    scheduler: choice(SCHEDULERS) = Field("none", description=(
        "none | step (StepLR: lr x step_gamma every step_size epochs)"))
    step_size: AtLeastOne = Field(7, description="step: epochs between learning-rate steps")
    step_gamma: bounded(float, "a finite number > 0", gt=0) = Field(0.1, description=(
        "step: factor of the learning rate at each step"))
    loss: choice(LOSSES) = Field("bce", description=(
        "bce | focal (FL = -alpha_t (1 - p_t)^gamma log p_t, Lin et al. 2017)"))
    focal_gamma: bounded(float, "a finite number >= 0", ge=0) = Field(2.0, description=(
        "focal: gamma"))
    focal_alpha: Probability | None = Field(None, description=(
        "focal: weight of the positive class (null: none)"))
    patience: bounded(int, "an integer >= 0 (0: off)", ge=0) = Field(0, description=(
        "early stopping after this many epochs without a better val loss (0: off)"))
    augment: bool = Field(False, description=(
        "random horizontal flip and small random crop (training batches only)"))
    width: AtLeastOne = Field(16, description="channels of small_cnn's first conv layer")
    device: choice(DEVICES) = Field("auto", description="auto (CUDA when available) | cpu | cuda")
    amp: bool = Field(True, description="bf16 autocast on CUDA (no effect on the CPU)")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA")
    compile: bool = Field(False, description="torch.compile the model")
    deterministic: bool = Field(True, description=(
        "deterministic algorithms (a little slower on CUDA)"))
    seed: Seed = Field(0, description="seed of init, shuffles and augmentation")


class PostprocessConfig(Section):
    """postprocess: decision thresholds fitted on validation."""

    methods: unique_list(choice(method_names), "methods") = Field(
        ["fixed", "youden", "demographic_parity", "equalized_odds"], description=(
            "threshold methods: fixed | youden | demographic_parity | equal_opportunity | "
            "equalized_odds (per group)"))
    fixed_threshold: Probability = Field(0.5, description="the threshold of fixed")
    groups: Attributes = Field(["s"], description=(
        "attributes whose joint value is the group of the per-group methods"))
    tolerance: Probability = Field(0.0, description=(
        "allowed gap of the constrained rate between groups (0: equal)"))
    seed: Seed = Field(0, description="seed of equalized_odds' randomised decisions")


class EvaluateConfig(Section):
    """evaluate: test metrics per group, gaps, flip rate, bootstrap intervals."""

    groups: Attributes = Field(["s"], description="attributes compared between groups")
    min_group_size: AtLeastOne = Field(1, description=(
        "a test group with fewer rows stops the stage (rather than a silent NaN)"))
    shift_p: bounded(float, "a probability in (0, 1)", gt=0, lt=1) = Field(0.5, description=(
        "P(S=1) on the shifted test set, independent of the label (0 or 1 would leave one "
        "group)"))
    n_boot: bounded(int, "an integer >= 0 (0 turns intervals off)", ge=0) = Field(
        1000, description="bootstrap resamples for the confidence intervals (0: none)")
    level: bounded(float, "a confidence level in [0.5, 1)", ge=0.5, lt=1) = Field(
        0.95, description="confidence level of the bootstrap intervals")
    seed: Seed = Field(0, description="seed of the bootstrap and the shifted test set")
    intersect: bool = Field(True, description=(
        "also the intersection of all evaluate.groups (s&sex, ...)"))
    bins: bounded(int, "an integer in [10, 4096]", ge=10, le=4096) = Field(256, description=(
        "score bins of the bootstrap's AUC and calibration error"))
    pareto_gap: choice(PARETO_GAPS) = Field("disparate_impact", description=(
        "the fairness gap (of the first of evaluate.groups) traded against balanced accuracy on "
        "the validation Pareto front, which the recommended (scheme, method) is chosen from"))
    resample: choice(("auto", "patient", "image")) = Field("auto", description=(
        "what the bootstrap resamples: patient (whole patients, each with all its test "
        "images), image (single images, within their group), or auto: patient when the index "
        "has patient ids, else image"))
    min_cell: bounded(int, "an integer >= 1", ge=1) = Field(5, description=(
        "a figure computed from fewer positives (TPR, AUC, ...), negatives (FPR, ...), "
        "positive decisions (PPV) or images (accuracy, ...) of a group is reported as missing, "
        "with the reason, and so is every gap that needs it"))
    max_accuracy_loss: bounded(float, "a number in [0, 1]", ge=0, le=1) = Field(
        0.02, description=(
            "the recommended (scheme, method) is, on the validation Pareto front, the one with "
            "the lowest fairness cost among those within this much of the best validation "
            "balanced accuracy"))
    n_perm: bounded(int, "an integer >= 0 (0 turns the tests off)", ge=0) = Field(
        10000, description=(
            "permutations of the group labels behind each gap's p-value (0: no p-values); the "
            "smallest p is 1 / (n_perm + 1), so Holm over m gaps needs n_perm >= 20 m to reject "
            "at 0.05"))
    correction: choice(("holm", "bh")) = Field("holm", description=(
        "correction of the p-values across all gaps of the run: holm (family-wise error) or "
        "bh (Benjamini-Hochberg, false discovery rate)"))


class ExplainConfig(Section):
    """explain: what each model looks at (attribution maps, activation signatures, robustness)."""


class ReportConfig(Section):
    """report: the verdict's criteria and the report's contents."""


class Params(BaseModel):
    """The whole params.yaml: every section, each defaulting to its defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="biaslab params.yaml")

    data: DataConfig = Field(default_factory=DataConfig, description="the data source (prepare)")
    prepare: PrepareConfig = Field(default_factory=PrepareConfig, description=(
        "decoding the images (prepare)"))
    bias: BiasConfig = Field(default_factory=BiasConfig, description="the injected bias S")
    split: SplitConfig = Field(default_factory=SplitConfig, description="train/val/test split")
    audit: AuditConfig = Field(default_factory=AuditConfig, description="the dataset audit")
    weights: WeightsConfig = Field(default_factory=WeightsConfig, description=(
        "sample weights, one model per scheme"))
    train: TrainConfig = Field(default_factory=TrainConfig, description="training the CNN")
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig, description=(
        "decision thresholds fitted on validation"))
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description=(
        "test metrics, gaps and bootstrap intervals"))
    explain: ExplainConfig = Field(default_factory=ExplainConfig, description=(
        "attribution maps, activation signatures and robustness probes (explain)"))
    report: ReportConfig = Field(default_factory=ReportConfig, description=(
        "the verdict's criteria (report)"))

    @model_validator(mode="before")
    @classmethod
    def _plain_sections(cls, data):
        """``bias:`` with nothing under it is the section with its defaults; a key that YAML
        reads as a number (``1:``) is its text, an unknown key rather than a TypeError."""
        if not isinstance(data, dict):
            return data
        return {str(key): {str(k): v for k, v in (value or {}).items()}
                if isinstance(value, dict | None) else value for key, value in data.items()}
