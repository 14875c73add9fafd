"""The ``train`` section: the CNN and its training recipe (read by biaslab.model's stages)."""

from typing import Annotated

from pydantic import Field, ValidationError, WrapValidator

from biaslab.config.errors import invalid
from biaslab.config.fields import AtLeastOne, Probability, Seed, bounded, choice, unique_list
from biaslab.config.section import Section

MODELS = ("small_cnn", "alexnet", "resnet18", "resnet34", "resnet50")
OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("none", "step", "cosine")
LOSSES = ("bce", "focal")
DEVICES = ("auto", "cpu", "cuda")
POS_WEIGHTS = "none, balanced, or a mapping of findings to numbers > 0, e.g. {Hernia: 50}"


def _pos_weight(value, handler):
    """One message for both kinds of value (pydantic would list the union's errors)."""
    try:
        return handler(value)
    except ValidationError:
        raise invalid(POS_WEIGHTS) from None


# none | balanced | {finding: weight}; a finding not in the mapping weighs 1
PosWeight = Annotated[choice(("none", "balanced"))
                      | Annotated[dict[str, Annotated[float, Field(gt=0)]], Field(min_length=1)],
                      WrapValidator(_pos_weight)]


class TrainConfig(Section):
    """train: the CNN and its training recipe."""

    model: choice(MODELS) = Field("small_cnn", description=(
        "small_cnn (CPU) | alexnet | resnet18 | resnet34 | resnet50 (torchvision, GPU)"))
    pretrained: str | None = Field(None, description=(
        "local torchvision state-dict file for the resnets and alexnet (never downloaded)"))
    epochs: AtLeastOne = Field(10, description="training epochs")
    batch_size: AtLeastOne = Field(32, description="images per batch")
    lr: bounded(float, "a finite number > 0", gt=0) = Field(0.004, description=(
        "learning rate (the peak of the cosine schedule)"))
    optimizer: choice(OPTIMIZERS) = Field("adam", description=(
        "adam | sgd (the seed recipe: lr 0.01, momentum 0.9, weight_decay 5e-4)"))
    momentum: bounded(float, "a finite number >= 0", ge=0) = Field(0.9, description="sgd only")
    weight_decay: bounded(float, "a finite number >= 0", ge=0) = Field(0.0, description=(
        "L2 penalty of the optimizer"))
    scheduler: choice(SCHEDULERS) = Field("cosine", description=(
        "none | step (StepLR: lr x step_gamma every step_size epochs) | cosine (linear warm-up "
        "over warmup_epochs, then cosine decay to 0 by the last batch, stepped every batch)"))
    warmup_epochs: bounded(float, "a finite number >= 0", ge=0) = Field(1.0, description=(
        "cosine: epochs of linear warm-up from lr / steps to lr (fractions allowed)"))
    step_size: AtLeastOne = Field(7, description="step: epochs between learning-rate steps")
    step_gamma: bounded(float, "a finite number > 0", gt=0) = Field(0.1, description=(
        "step: factor of the learning rate at each step"))
    loss: choice(LOSSES) = Field("bce", description=(
        "bce | focal (FL = -alpha_t (1 - p_t)^gamma log p_t, Lin et al. 2017)"))
    focal_gamma: bounded(float, "a finite number >= 0", ge=0) = Field(2.0, description=(
        "focal: gamma"))
    focal_alpha: Probability | None = Field(None, description=(
        "focal: weight of the positive class (null: none)"))
    ema: bounded(float, "a number in [0, 1) (0: off)", ge=0, lt=1) = Field(0.9, description=(
        "decay d of the exponential moving average of the weights, updated every batch "
        "(avg = d avg + (1 - d) weights); the average is evaluated each epoch and kept (0: off, "
        "the weights themselves)"))
    bn_recompute: bool = Field(True, description=(
        "recompute BatchNorm's statistics of the evaluated model over the training set after "
        "each epoch (precise BN) instead of the running averages of the last batches"))
    pos_weight: PosWeight = Field("none", description=(
        "several findings (data.findings): the weight of each finding's positive images in "
        "its binary cross-entropy: none (1) | balanced (negatives / positives of the finding "
        "in the training split) | a mapping, e.g. {Hernia: 50} (findings not named: 1)"))
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
