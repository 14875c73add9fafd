"""The ``report`` section: the verdict's criteria and the report's contents."""

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from biaslab.config.errors import invalid
from biaslab.config.fields import AtLeastOne, Probability, choice, names_columns
from biaslab.config.section import Section


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
                "base_disparate_impact", "base_statistical_parity_difference",
                "underdiagnosis_gap")
        return overall, gaps

    class Criterion(BaseModel):
        """One test of the verdict: a figure of grid.csv within bounds."""

        model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

        figure: choice(lambda: sum(ReportConfig.figures(), ())) = Field(description=(
            "a figure of grid.csv: accuracy, balanced_accuracy, auc, flip_rate, shifted.* (the "
            "whole test set), or a gap between groups: disparate_impact, "
            "excess_disparate_impact, equal_opportunity_difference, ..., underdiagnosis_gap (a "
            "multi-label run's 'any finding' rows, docs: Multi-label findings) (docs: The "
            "report)"))
        min: float | None = Field(None, description="the lowest value that passes (null: none)")
        max: float | None = Field(None, description="the highest value that passes (null: none)")
        abs: bool = Field(False, description=(
            "compare |value| with the bounds (a difference whose sign only says which group)"))
        attributes: names_columns(list[str] | None, scope="evaluated") = Field(None, description=(
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
    rank_by: choice(lambda: sum(ReportConfig.figures(), ())) = Field(
        "balanced_accuracy", description=(
            "the figure on which every (scheme, method) is ranked within each training seed, "
            "for the rank test against plain training (none/fixed): a figure of the test set, "
            "or a gap, ranked for the first of evaluate.groups by its distance from its ideal "
            "(docs: The report)"))
    findings_gap: choice(lambda: ("equal_opportunity_difference",
                                  "statistical_parity_difference", "auc_gap",
                                  "worst_group_balanced_accuracy")) = Field(
        "equal_opportunity_difference", description=(
            "a multi-label run's heatmap: the gap shown per finding x group, as the group's rate "
            "(TPR, selection rate, AUC, balanced accuracy) minus the finding's overall rate"))
    findings_alpha: Probability = Field(0.05, description=(
        "a multi-label run's heatmap: a cell is marked when its attribute's gap has an "
        "adjusted p-value (corrected over every finding together) at most this, and an "
        "interval excluding 0"))
    min_group_size: AtLeastOne = Field(30, description=(
        "a test group behind a criterion with fewer units (patients where the index has patient "
        "ids, else images) is flagged as too small"))
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
