"""The ``sweep`` section: how each experiment of a sweep is scheduled on a Ray cluster."""

from pydantic import Field

from biaslab.config.fields import bounded
from biaslab.config.section import Section


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
