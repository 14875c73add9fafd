"""The ``explain`` section: what each model looks at (read by biaslab.explain's stage)."""

from typing import Annotated

from pydantic import Field, field_validator

from biaslab.config.errors import invalid
from biaslab.config.fields import AtLeastOne, Seed, bounded, choice
from biaslab.config.model import DEVICES
from biaslab.config.section import Section


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
