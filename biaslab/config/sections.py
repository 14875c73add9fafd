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
from biaslab.data.split_names import SPLITS

SOURCES = ("digits", "nih", "folder", "imagefolder", "csv")
BIAS_KINDS = ("none", "noise_channel", "patch")
PATCH_POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
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
    """The threshold methods, in order: the names :data:`biaslab.fairness.thresholds.METHODS`
    registers.

    Imported when first needed: biaslab.fairness.thresholds brings numpy and pandas, which reading
    params.yaml does not need otherwise.
    """
    from biaslab.fairness.thresholds import METHODS

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
        "imagefolder | csv (docs: Data sources)"))
    root: str = Field("", description=(
        "folder of the data (every source but digits); a relative path is taken from the "
        "repository root"))
    age_bins: bounded(list[Annotated[float, Field(gt=0)]], AGES) = Field(
        [40.0, 60.0, 80.0], description="age_group cut points: <40, 40-59, 60-79, 80+")
    negative: Digits = Field([0, 2, 4, 6, 8], description="digits: the digits labelled 0")
    positive: Digits = Field([1, 3, 5, 7, 9], description="digits: the digits labelled 1")
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
        "none | noise_channel (a 2nd input channel: 0 if S=0, N(0, I) noise if S=1) | patch "
        "(a square marker stamped on the image where S=1, like a hospital's tag on an X-ray)"))
    p0: Probability = Field(0.3, description="P(S=1 | y=0)")
    p1: Probability = Field(0.7, description=(
        "P(S=1 | y=1): |p1 - p0| is how much S tells about the label"))
    seed: Seed = Field(0, description="seed of S and of each image's (fixed) noise")
    patch_size: bounded(int, "an integer in [1, 1022] (pixels)", ge=1, le=1022) = Field(
        4, description=(
            "patch: side of the square marker in pixels; it must fit the image with a 1-pixel "
            "margin each side (at most prepare.size - 2)"))
    patch_position: choice(PATCH_POSITIONS) = Field("bottom_right", description=(
        "patch: where the marker goes: top_left | top_right | bottom_left | bottom_right "
        "(1 pixel in from the edges) | center"))
    patch_value: bounded(float, "a number in [-1, 1]", ge=-1, le=1) = Field(1.0, description=(
        "patch: the marker's value in the normalised image: -1 black, 1 white"))


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
    # not params.yaml's 500, which makes its digits task hard enough to show a shortcut: a
    # default that subsampled every dataset would shrink (or refuse) real data
    train_size: bounded(int, "an integer >= 0 (0: keep all)", ge=0) = Field(0, description=(
        "subsample the training split to this many images (0: all of it; the repository's "
        "params.yaml sets 500 for its digits task)"))
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
    seeds: unique_list(Seed, "seeds") = Field([0, 1, 2], description=(
        "training seeds (init, shuffles, augmentation): each scheme is trained once per seed; "
        "evaluate reports the mean over seeds, with an interval that adds the seed variance to "
        "the sampling one"))


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

    # attribution maps, the bias's share of the attribution, robustness (biaslab.explain)
    seed: Seed = Field(0, description=(
        "seed of the explained images (the same for every scheme), of the robustness noise and "
        "of the activation signatures' k-means"))
    per_cell: bounded(int, "an integer in [0, 64] (0: no maps)", ge=0, le=64) = Field(
        2, description=(
            "attribution maps: test images drawn per group x outcome (TP, FP, TN, FN) of the "
            "model's own decisions (postprocess.fixed_threshold); 0: no maps"))
    share_images: bounded(int, "an integer >= 0 (0: no attribution share)", ge=0) = Field(
        64, description=(
            "attribution share: test images per group (at most) on which the share of the "
            "occlusion attribution that falls on the bias is measured, with occluding tiles of "
            "the bias's size (the same images for every scheme; 0: none)"))
    occlusion_window: bounded(float, "a fraction in (0, 1]", gt=0, le=1) = Field(
        0.125, description=(
            "occlusion maps: side of the occluding square as a share of the image side (4 "
            "pixels at 32x32, 32 at 256x256)"))
    occlusion_stride: bounded(float, "a fraction in (0, 1]", gt=0, le=1) = Field(
        0.0625, description=(
            "occlusion maps: step between two windows as a share of the image side (the cost "
            "grows with 1 / stride^2)"))
    deconv: choice(("deconvolution", "guided_backprop")) = Field(
        "deconvolution", description=(
            "deconvnet-style map: deconvolution (Zeiler & Fergus 2014) | guided_backprop "
            "(Springenberg et al. 2015)"))
    rotations: bounded(list[Annotated[float, Field(ge=-180, le=180)]],
                       "a non-empty list of angles in [-180, 180] degrees", min_length=1) = Field(
        [0.0, 10.0, 20.0, 30.0], description=(
            "robustness: rotations of the test images, counter-clockwise, in degrees (0: the "
            "images as they are)"))
    noise: bounded(list[Annotated[float, Field(ge=0)]],
                   "a non-empty list of standard deviations >= 0", min_length=1) = Field(
        [0.0, 0.25, 0.5], description=(
            "robustness: standard deviations of Gaussian noise added to the test images, in "
            "normalised units (the image spans [-1, 1])"))
    batch_size: AtLeastOne = Field(512, description=(
        "images per forward pass, occluded copies included"))
    device: choice(DEVICES) = Field("auto", description="auto (CUDA when available) | cpu | cuda")

    # activation signatures (biaslab.explain.signatures)
    layers: list[str] = Field([], description=(
        "activation signatures: layers to cluster, as module names of the model (e.g. "
        "features.3, net.layer2); [] is the model's defaults (small_cnn: its conv blocks and "
        "the penultimate layer; resnets: layer1..layer4; alexnet: its pooling blocks and the "
        "penultimate layer)"))
    pca_components: bounded(int, "an integer >= 0 (0: keep explain.pca_variance)", ge=0) = Field(
        0, description=(
            "activation signatures: principal components kept per layer before k-means (0: as "
            "many as explain.pca_variance needs)"))
    pca_variance: bounded(float, "a fraction in (0, 1]", gt=0, le=1) = Field(0.9, description=(
        "activation signatures: share of each layer's variance the kept components explain "
        "(when pca_components is 0), with at most 50 components"))
    k_range: bounded(list[Annotated[int, Field(ge=2, le=64)]],
                     "[k_min, k_max], integers with 2 <= k_min <= k_max <= 64",
                     min_length=2, max_length=2) = Field([2, 8], description=(
        "activation signatures: the numbers of k-means clusters tried per layer; the one with "
        "the best silhouette is kept"))
    anomaly_purity: bounded(float, "a share in (0.5, 1]", gt=0.5, le=1) = Field(
        0.8, description=(
            "activation signatures: an image in a cluster where at least this share of the "
            "images are of the other class is an anomaly"))
    anomaly_z: bounded(float, "a number > 0", gt=0) = Field(3.5, description=(
        "activation signatures: an image whose distance to its cluster's centroid has a "
        "robust z-score (median, MAD) above this is an anomaly"))
    anomaly_images: bounded(int, "an integer >= 0", ge=0) = Field(16, description=(
        "activation signatures: anomalies drawn as thumbnails (0: none)"))

    @field_validator("layers")
    @classmethod
    def _layers_once(cls, layers: list[str]) -> list[str]:
        if len(set(layers)) != len(layers) or not all(layers):
            raise invalid("a list of distinct, non-empty layer names")
        return layers

    @field_validator("k_range")
    @classmethod
    def _k_ordered(cls, k_range: list[int]) -> list[int]:
        if k_range[0] > k_range[1]:
            raise invalid("[k_min, k_max], integers with 2 <= k_min <= k_max <= 64")
        return k_range


class ReportConfig(Section):
    """report: the verdict's criteria and the report's contents."""

    @staticmethod
    def figures() -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The figures a criterion may judge: over the whole test set, and the gaps between the
        groups of an attribute (grid.csv's ``ATTR.FIGURE``; all but the base rates have a
        p-value)."""
        overall = ("accuracy", "balanced_accuracy", "auc", "flip_rate", "shifted.accuracy",
                   "shifted.balanced_accuracy", "shifted.auc")
        gaps = ("disparate_impact", "statistical_parity_difference",
                "equal_opportunity_difference", "average_odds_difference",
                "equalized_odds_difference", "worst_group_balanced_accuracy", "auc_gap",
                "excess_disparate_impact", "excess_statistical_parity_difference",
                "base_disparate_impact", "base_statistical_parity_difference")
        return overall, gaps

    class Criterion(BaseModel):
        """One test of the verdict: a figure of grid.csv within bounds."""

        model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

        figure: choice(lambda: sum(ReportConfig.figures(), ())) = Field(description=(
            "a figure of grid.csv: accuracy, balanced_accuracy, auc, flip_rate, shifted.* (the "
            "whole test set), or a gap between groups: disparate_impact, "
            "excess_disparate_impact, equal_opportunity_difference, ... (docs: The report)"))
        min: float | None = Field(None, description="the lowest value that passes (null: none)")
        max: float | None = Field(None, description="the highest value that passes (null: none)")
        abs: bool = Field(False, description=(
            "compare |value| with the bounds (a difference whose sign only says which group)"))
        attributes: list[str] | None = Field(None, description=(
            "gaps: the attributes judged, e.g. [s] (null: every attribute in grid.csv)"))
        require_interval: bool = Field(False, description=(
            "judge by the confidence interval: passed when it lies within the bounds, failed "
            "when it lies outside, not enough data when it crosses a bound"))
        alpha: Probability | None = Field(None, description=(
            "gaps: fail only when the adjusted p-value (ATTR.GAP_p_adj) is at most alpha, i.e. "
            "the gap is unlikely to be chance; otherwise not enough data (null: no test)"))
        name: str | None = Field(None, description=(
            "short name in metrics/verdict.json and dvc exp show (null: ATTR.FIGURE)"))

        @model_validator(mode="after")
        def _consistent(self):
            gaps = ReportConfig.figures()[1]
            if self.min is None and self.max is None:
                raise invalid("a bound: min, max or both", key="max", value=None)
            if None not in (self.min, self.max) and self.min > self.max:
                raise invalid(f"min <= max (min is {self.min})", key="max", value=self.max)
            if self.abs and self.min is not None and self.min < 0:
                raise invalid("a bound >= 0 with abs: true", key="min", value=self.min)
            if self.name in ("pair", "verdict") or self.name == "":
                raise invalid("a name other than pair and verdict (metrics/verdict.json's own "
                              "keys), or null", key="name", value=self.name)
            gap = self.figure in gaps
            if self.attributes is not None and (not gap or not self.attributes):
                raise invalid("a non-empty list, for a gap between groups only (null: all)",
                              key="attributes", value=self.attributes)
            if self.alpha is not None and (not gap or self.figure.startswith("base_")):
                raise invalid("null: only gaps have p-values (base rates do not)",
                              key="alpha", value=self.alpha)
            return self

    criteria: list[Criterion] = Field(
        default_factory=lambda: [  # built late: the check reads ReportConfig.figures()
            ReportConfig.Criterion(figure="excess_disparate_impact", min=0.8, max=1.25),
            ReportConfig.Criterion(figure="equal_opportunity_difference", max=0.1, abs=True),
            ReportConfig.Criterion(figure="flip_rate", max=0.05)],
        description=(
            "the verdict: each a figure and its bounds, judged for every (scheme, method), the "
            "recommended one first; by default the four-fifths rule on the excess disparate "
            "impact, an equal-opportunity difference of at most 0.1 and a flip rate of at most "
            "0.05"))
    min_group_size: AtLeastOne = Field(30, description=(
        "a test group behind a criterion with fewer patients is flagged as too small"))
    min_class_size: AtLeastOne = Field(10, description=(
        "a test group behind a criterion with fewer positives or negatives is flagged as too "
        "small"))

    @model_validator(mode="before")
    @classmethod
    def _each_criterion(cls, data):
        """Each criterion checked on its own, so that an error names it: report.criteria[1].max
        (pydantic's location of an item in a list is no part of the usual dotted key)."""
        if not isinstance(data, dict) or "criteria" not in data:
            return data
        if not isinstance(data["criteria"], list):
            raise invalid("a list of criteria, e.g. [{figure: flip_rate, max: 0.05}] ([]: none)",
                          key="criteria", value=data["criteria"])
        criteria, names = [], {}
        for i, item in enumerate(data["criteria"]):
            criteria.append(criterion := cls._criterion(i, item))
            if criterion.name is not None and names.setdefault(criterion.name, i) != i:
                raise invalid(f"a name no other criterion has (criteria[{names[criterion.name]}] "
                              "has it)", key=f"criteria[{i}].name", value=criterion.name)
        return {**data, "criteria": criteria}

    @classmethod
    def _criterion(cls, i: int, item):
        import difflib

        from biaslab.config.errors import type_name

        if isinstance(item, ReportConfig.Criterion):
            return item
        if not isinstance(item, dict):
            raise invalid("a mapping such as {figure: flip_rate, max: 0.05}",
                          key=f"criteria[{i}]", value=item)
        item = {str(k): v for k, v in item.items()}
        try:
            return ReportConfig.Criterion(**item)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = str(error["loc"][0]) if error["loc"] else ""
            value, fields = item.get(key), ReportConfig.Criterion.model_fields
            if error["type"] == "config":  # a field's bounds, or _consistent (names its field)
                ctx = error["ctx"]
                key, value = (ctx["key"], ctx["value"]) if ctx["key"] else (key, value)
                expected = ctx["expected"]
            elif error["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, list(fields), n=1)
                expected = "a key of a criterion" + (
                    f" (did you mean {close[0]}?)" if close else ": " + ", ".join(fields))
            elif error["type"] == "missing":
                expected = "a value (every criterion names its figure)"
            elif error["type"] == "finite_number":
                expected = "a finite number"
            else:
                expected = f"a value of type {type_name(fields[key].annotation)}"
            raise invalid(expected, key=f"criteria[{i}].{key}", value=value) from None

class SweepConfig(Section):
    """sweep: how `make sweep RAY=...` schedules each experiment on the Ray cluster."""

    gpus_per_experiment: bounded(float, "a number >= 0", ge=0) = Field(1.0, description=(
        "GPUs Ray gives each experiment (0: CPU machines; 0.5: two experiments share a GPU)"))
    cpus_per_experiment: bounded(float, "a number > 0", gt=0) = Field(1.0, description=(
        "CPUs Ray gives each experiment"))
    max_retries: bounded(int, "an integer >= 0", ge=0) = Field(3, description=(
        "times Ray runs again an experiment whose worker process or machine died"))
    workdir: str = Field("", description=(
        "scratch folder of each experiment's clone on its machine ('': the temporary folder)"))


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
    sweep: SweepConfig = Field(default_factory=SweepConfig, description=(
        "scheduling of the sweep's experiments on a Ray cluster (make sweep RAY=...)"))

    @model_validator(mode="after")
    def _patch_fits(self):
        """The patch fits the images (prepare.size): said by the params stage, before any
        training."""
        if self.bias.kind == "patch" and self.bias.patch_size > self.prepare.size - 2:
            raise invalid(f"at most prepare.size - 2 = {self.prepare.size - 2} (a 1-pixel "
                          "margin each side)", key="bias.patch_size", value=self.bias.patch_size)
        return self

    @model_validator(mode="before")
    @classmethod
    def _plain_sections(cls, data):
        """``bias:`` with nothing under it is the section with its defaults; a key that YAML
        reads as a number (``1:``) is its text, an unknown key rather than a TypeError."""
        if not isinstance(data, dict):
            return data
        return {str(key): {str(k): v for k, v in (value or {}).items()}
                if isinstance(value, dict | None) else value for key, value in data.items()}
