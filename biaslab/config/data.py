"""The sections of the data (read by biaslab.data's stages): where the images come from
(``data``), how they are decoded (``prepare``), the injected bias (``bias``), the split
(``split``) and the dataset audit (``audit``)."""

from typing import Annotated, Any

from pydantic import Field, ValidationError, WrapValidator, field_validator, model_validator

from biaslab.config.errors import invalid
from biaslab.config.fields import AtLeastOne, Probability, Seed, bounded, choice, names_columns
from biaslab.config.section import Section
from biaslab.data.finding_names import LABEL_PREFIX, NIH_FINDINGS
from biaslab.data.split_names import SPLITS

SOURCES = ("digits", "nih", "folder", "imagefolder", "csv")
BIAS_KINDS = ("none", "noise_channel", "patch")
PATCH_POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
SPLIT_NAMES = SPLITS

# field types used by one section only (the shared ones are in biaslab.config.fields)
Digits = bounded(list[Annotated[int, Field(ge=0, le=9)]], "a non-empty list of digits 0..9",
                 min_length=1)
AGES = "increasing positive ages, e.g. [40, 60, 80]"
TRAIN_SIZES = "auto, or an integer >= 0 (0: keep all)"


def _train_size(value, handler):
    """One message for both kinds of value (pydantic would list the union's errors)."""
    try:
        return handler(value)
    except ValidationError:
        raise invalid(TRAIN_SIZES) from None


# auto resolves per source in biaslab.data.split.train_rows (the digits task's 500, else all)
TrainSize = Annotated[bounded(int, TRAIN_SIZES, ge=0) | choice(("auto",)),
                      WrapValidator(_train_size)]


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
    findings: names_columns(list[str] | str, prefix=LABEL_PREFIX) = Field([], description=(
        "several findings, one model with one output each (docs: Data sources, Several "
        "findings): nih: a list of findings, or all (the 14, in the NIH order); csv and the "
        "folder source's table: a list of 0/1 label columns; []: one label (data.finding, "
        "data.label_column)"))
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
    attributes: names_columns(list[str]) = Field([], description=(
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
        return self._findings()

    def _findings(self):
        """``all`` resolved to the 14 NIH findings; a list checked against the source."""
        # an index column label_X is a finding's label (train reads the findings from them)
        reserved = [a for a in self.attributes if a.startswith(LABEL_PREFIX)]
        if reserved:
            raise invalid(f"attributes not named {LABEL_PREFIX}... (the index names the label "
                          "column of each finding of data.findings so; list them there)",
                          key="attributes", value=reserved)
        findings = self.findings
        if findings == "all" and self.source == "nih":
            findings = list(NIH_FINDINGS)
        elif isinstance(findings, str):
            raise invalid("a list of findings (or all, with data.source: nih)", key="findings",
                          value=findings)
        if not findings:
            return self
        if self.source not in ("nih", "csv", "folder"):
            raise invalid("[] with data.source: " + self.source + " (several findings: nih, "
                          "csv or folder)", key="findings", value=findings)
        if len(set(findings)) != len(findings) or not all(f.strip() for f in findings):
            raise invalid("a list of distinct, non-empty findings", key="findings",
                          value=findings)
        unknown = [f for f in findings if f not in NIH_FINDINGS]
        if self.source == "nih" and unknown:
            raise invalid("findings among " + ", ".join(NIH_FINDINGS) + " (or all)",
                          key="findings", value=unknown)
        if self.finding != "any":
            raise invalid("data.finding: any (its default) when data.findings is set: one "
                          "label, or several, not both", key="finding", value=self.finding)
        object.__setattr__(self, "findings", list(findings))  # frozen: set once, validated
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
    """split: train, val and test, stratified; where the index has patient ids, a patient's
    images never straddle two."""

    fractions: dict[str, bounded(float, "a fraction in (0, 1)", gt=0, lt=1)] = Field(
        {"train": 0.6, "val": 0.2, "test": 0.2},
        description="the fractions of train, val and test; they sum to 1",
        json_schema_extra={"required": list(SPLIT_NAMES), "propertyNames": {"enum": SPLIT_NAMES}})
    stratify: names_columns(list[str], drops_s=True) = Field(["label", "s"], description=(
        "strata: joint values of these columns (s is skipped when bias.kind is none); patients "
        "(where the index has patient ids) never straddle splits"))
    seed: Seed = Field(0, description="seed of the split")
    use_source: bool = Field(False, description=(
        "keep the source's own split (index column source_split, e.g. folder's train/valid/test "
        "folders)"))
    min_stratum: AtLeastOne = Field(5, description=(
        "a stratum with fewer units (patients where the index has patient ids, else images) is "
        "merged into a coarser one, with a warning"))
    train_size: TrainSize = Field("auto", description=(
        "subsample the training split to this many images; 0: all of it; auto: the digits "
        "task's 500 on the digits source (few enough that its small CNN leans on the injected "
        "shortcut), all of it on any other source"))
    train_composition: names_columns(dict[str, str | float | int], entry="attribute") = Field(
        {}, description=(
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
        if self.train_size == 0:  # auto: checked by split, which knows the source
            raise invalid("a size > 0 (or auto, on the digits) when split.train_composition "
                          "is set", key="train_size", value=0)
        return self


class AuditConfig(Section):
    """audit: the dataset audit (group sizes, prevalences, Simpson check)."""

    attributes: names_columns(list[str], drops_s=True) = Field(["s"], description=(
        "columns to tabulate, and their pairwise intersections (any index column: s, digit, "
        "sex, age_group, ...)"))
    min_group_size: AtLeastOne = Field(30, description="warn about smaller groups in any split")
    level: bounded(float, "a confidence level in [0.5, 1)", ge=0.5, lt=1) = Field(
        0.95, description="confidence level of the Wilson intervals")
    simpson_min_effect: Probability = Field(0.02, description=(
        "prevalence difference that counts as an association (Simpson check)"))
