"""The ``mitigation`` section: the params of the in-training methods (read by train).

The methods are schemes of ``weights.schemes`` (one model per method x seed, beside the
weighting schemes): their weights stage writes uniform weights and the train stage reads the
method from the scheme's name (:mod:`biaslab.model.mitigation`).
"""

from pydantic import Field

from biaslab.config.fields import AtLeastOne, bounded, choice
from biaslab.config.section import Section

# the schemes of weights.schemes that change the training objective rather than the weights
IN_TRAINING = ("groupdro", "jtt", "adversarial", "domain_independent")
DRO_CELLS = ("group", "group_class")


class MitigationConfig(Section):
    """mitigation: the in-training methods' params (schemes groupdro, jtt, adversarial,
    domain_independent)."""

    groupdro_by: choice(DRO_CELLS) = Field("group", description=(
        "groupdro: what its weights q are over: group (the joint value of weights.groups) | "
        "group_class (group x class, Sagawa et al.'s option)"))
    groupdro_step_size: bounded(float, "a finite number > 0", gt=0) = Field(0.01, description=(
        "groupdro: step size eta of the online weights, q_g <- q_g exp(eta l_g), normalised"))
    groupdro_adjustment: bounded(float, "a finite number >= 0", ge=0) = Field(
        0.0, description=(
            "groupdro: generalisation adjustment C: the weights move on l_g + C / sqrt(n_g), "
            "n_g the group's training rows (0: none)"))
    jtt_epochs: AtLeastOne = Field(1, description=(
        "jtt: epochs T of the identification run (plain training) whose errors are upweighted"))
    jtt_upweight: bounded(float, "a finite number >= 1", ge=1) = Field(6.0, description=(
        "jtt: lambda_up, the weight of the identification run's misclassified training rows "
        "(the others weigh 1; then normalised to mean 1)"))
    adversary_weight: bounded(float, "a finite number >= 0", ge=0) = Field(0.1, description=(
        "adversarial: lambda, the factor of the reversed gradient of the group head's loss "
        "(1 was unstable on the digits' patch shortcut, docs/training.md)"))
    adversary_hidden: bounded(int, "an integer >= 0", ge=0) = Field(32, description=(
        "adversarial: hidden units of the group head (0: a linear head)"))
