"""The whole params.yaml: :class:`Params`, one field per section, and the checks across
sections."""

from pydantic import BaseModel, ConfigDict, Field, model_validator

from biaslab.config.data import AuditConfig, BiasConfig, DataConfig, PrepareConfig, SplitConfig
from biaslab.config.errors import invalid
from biaslab.config.explain import ExplainConfig
from biaslab.config.fairness import EvaluateConfig, PostprocessConfig, WeightsConfig
from biaslab.config.mitigation import MitigationConfig
from biaslab.config.model import TrainConfig
from biaslab.config.report import ReportConfig
from biaslab.config.sweep import SweepConfig


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
    mitigation: MitigationConfig = Field(default_factory=MitigationConfig, description=(
        "the in-training methods of weights.schemes (groupdro, jtt, adversarial, "
        "domain_independent)"))
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
