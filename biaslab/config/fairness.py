"""The sections of biaslab.fairness's stages: the sample weights (``weights``), the decision
thresholds fitted on validation (``postprocess``) and the test metrics (``evaluate``)."""

from pydantic import Field, model_validator

from biaslab.config.errors import invalid
from biaslab.config.fields import (
    AtLeastOne,
    Attributes,
    Probability,
    Seed,
    bounded,
    choice,
    names_columns,
    unique_list,
)
from biaslab.config.mitigation import IN_TRAINING
from biaslab.config.section import Section

SCHEMES = (
    "none", "class_balanced", "group_balanced", "group_class_balanced", "reweighing",
    "undersample", "oversample", "column", *IN_TRAINING,
)
WEIGHT_MODES = ("loss", "sampler")
SAMPLE_CELLS = ("group", "group_class")
# the gaps whose cost may be traded for accuracy: the error-rate gaps and the excess over the
# base rates, which a perfect classifier meets whatever the groups' base rates, and the raw
# parity gaps, which it does not when they differ (a warning then; docs: Concepts)
PARETO_GAPS = (
    "equalized_odds_difference", "equal_opportunity_difference", "average_odds_difference",
    "worst_group_balanced_accuracy", "excess_disparate_impact",
    "excess_statistical_parity_difference", "auc_gap", "disparate_impact",
    "statistical_parity_difference",
)


def method_names() -> tuple[str, ...]:
    """The threshold methods, in order: the names :data:`biaslab.fairness.thresholds.METHODS`
    registers.

    Imported when first needed: biaslab.fairness.thresholds brings numpy and pandas, which reading
    params.yaml does not need otherwise.
    """
    from biaslab.fairness.thresholds import METHODS

    return tuple(METHODS)


class WeightsConfig(Section):
    """weights: the sample weights, one scheme per model."""

    schemes: unique_list(choice(SCHEMES), "schemes") = Field(["none", "reweighing"], description=(
        "one model per scheme: none | class_balanced | group_balanced | group_class_balanced | "
        "reweighing | undersample | oversample | column (weights), or an in-training method "
        "(uniform weights, params in mitigation): groupdro | jtt | adversarial | "
        "domain_independent"))
    groups: names_columns(Attributes) = Field(["s"], description=(
        "attributes whose joint value (intersection) is the group of the group schemes and "
        "of the in-training methods groupdro, adversarial and domain_independent"))
    mode: choice(WEIGHT_MODES) = Field("loss", description=(
        "loss (weights multiply the loss) | sampler (each epoch draws the training rows with "
        "replacement, P proportional to weight)"))
    sample_by: choice(SAMPLE_CELLS) = Field("group", description=(
        "cells of undersample and oversample: group | group_class"))
    column: names_columns(str | None) = Field(None, description=(
        "metadata column holding the weights of scheme column (the course's --weights_col)"))
    seed: Seed = Field(0, description="seed of undersample/oversample and the sampler's draws")

    @model_validator(mode="after")
    def _column_named(self):
        if "column" in self.schemes and not self.column:
            raise invalid("the name of a metadata column when weights.schemes lists 'column'",
                          key="column", value=self.column)
        return self


class PostprocessConfig(Section):
    """postprocess: decision thresholds fitted on validation."""

    methods: unique_list(choice(method_names), "methods") = Field(
        ["fixed", "youden", "demographic_parity", "equalized_odds"], description=(
            "threshold methods: fixed | youden | demographic_parity | equal_opportunity | "
            "equalized_odds (per group) | temperature | isotonic (per-group recalibration on "
            "validation, then fixed_threshold on the recalibrated scores)"))
    fixed_threshold: Probability = Field(0.5, description=(
        "the threshold of fixed, and of temperature's and isotonic's recalibrated scores"))
    groups: names_columns(Attributes) = Field(["s"], description=(
        "attributes whose joint value is the group of the per-group methods"))
    tolerance: Probability = Field(0.0, description=(
        "allowed gap of the constrained rate between groups (0: equal)"))
    seed: Seed = Field(0, description="seed of equalized_odds' randomised decisions")


class EvaluateConfig(Section):
    """evaluate: test metrics per group, gaps, flip rate, bootstrap intervals."""

    groups: names_columns(Attributes) = Field(["s"], description=(
        "attributes compared between groups"))
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
    pareto_gap: choice(PARETO_GAPS) = Field("equalized_odds_difference", description=(
        "the fairness gap (of the first of evaluate.groups) whose cost is traded against "
        "balanced accuracy on the validation Pareto front, which the recommended (scheme, "
        "method) is chosen from: equalized_odds_difference | equal_opportunity_difference | "
        "average_odds_difference | worst_group_balanced_accuracy | excess_disparate_impact | "
        "excess_statistical_parity_difference | auc_gap (a perfect classifier pays nothing) | "
        "disparate_impact | statistical_parity_difference (raw: it pays when the groups' base "
        "rates differ, and the report warns)"))
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
            "balanced accuracy, leaving out any pair another beats on validation balanced "
            "accuracy while being no worse on any error-rate gap"))
    n_perm: bounded(int, "an integer >= 0 (0 turns the tests off)", ge=0) = Field(
        10000, description=(
            "permutations of the group labels behind each gap's p-value (0: no p-values); the "
            "smallest p is 1 / (n_perm + 1), so Holm over m gaps needs n_perm >= 20 m to reject "
            "at 0.05"))
    correction: choice(("holm", "bh")) = Field("holm", description=(
        "correction of the p-values across all gaps of the run: holm (family-wise error) or "
        "bh (Benjamini-Hochberg, false discovery rate)"))
