"""The threshold methods by name (``postprocess.methods``), and the one place that builds them."""

from __future__ import annotations

import inspect

from biaslab.fairness.thresholds.calibrate import GroupIsotonic, GroupTemperatureScaling
from biaslab.fairness.thresholds.odds import EqualizedOddsThresholds
from biaslab.fairness.thresholds.parity import (
    DemographicParityThresholds,
    EqualOpportunityThresholds,
)
from biaslab.fairness.thresholds.single import FixedThreshold, YoudenThreshold

METHODS: dict[str, type] = {
    "fixed": FixedThreshold,
    "youden": YoudenThreshold,
    "demographic_parity": DemographicParityThresholds,
    "equal_opportunity": EqualOpportunityThresholds,
    "equalized_odds": EqualizedOddsThresholds,
    "temperature": GroupTemperatureScaling,  # per-group recalibration, then the threshold
    "isotonic": GroupIsotonic,
}


def make_postprocessor(
    method: str, *, fixed_threshold: float = 0.5, tolerance: float = 0.0, seed: int = 0
):
    """Build the post-processor named ``method``, unfitted.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`.
    fixed_threshold : float
        The threshold of ``fixed`` (its ``threshold``), and of the recalibrated scores of
        ``temperature`` and ``isotonic``.
    tolerance : float
        The allowed gap of the constrained rate between groups, for the per-group methods.
    seed : int
        The random draws of ``equalized_odds``.

    Each method takes only the options its constructor names; the others are ignored.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"postprocess.methods: unknown method {method!r}; allowed: "
                         + ", ".join(METHODS))
    cls = METHODS[method]
    options = {"threshold": fixed_threshold, "tolerance": tolerance, "seed": seed}
    accepted = inspect.signature(cls).parameters
    return cls(**{name: value for name, value in options.items() if name in accepted})
