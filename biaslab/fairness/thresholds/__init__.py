"""Decision-threshold post-processing, scikit-learn shaped: fit on validation, predict on test.

Every post-processor has ``fit(scores, labels, groups=None)`` storing fitted attributes ending
in ``_`` and returning ``self``; ``predict(scores, groups=None)`` giving 0/1 decisions;
``threshold_of(scores, groups=None)`` giving the threshold each row is compared with;
``params_()`` giving what to save so that the decisions can be reproduced from the scores (and
groups) alone; and the class attribute ``needs_groups``, true when ``fit`` and ``predict`` need
the group key of every row (:func:`biaslab.data.group_keys.group_keys`).

Modules: ``single`` (fixed, youden: one threshold for everybody), ``parity`` (demographic
parity, equal opportunity), ``odds`` (equalized odds), ``calibrate`` (temperature, isotonic:
per-group recalibration, then a threshold; they also have ``calibrate(scores, groups)``, the
recalibrated probabilities that the decisions file keeps as the score), ``registry``
(:data:`METHODS`, :func:`make_postprocessor`), ``decide`` (fit on a table, decide every row,
counterfactuals included; every method of a run, skipping those the data cannot support),
``_scores`` (input checks, :class:`NotApplicable` and the cut table they all share).

A method whose fit data cannot support it (a group with one class, a group absent from the fit
data, ...) raises :class:`NotApplicable`, a ValueError: the run reports it as not applicable and
goes on with the others. Every other error is a bad input or param and stops the run.
"""

from biaslab.fairness.thresholds._scores import NotApplicable, cut_table
from biaslab.fairness.thresholds.calibrate import GroupIsotonic, GroupTemperatureScaling
from biaslab.fairness.thresholds.decide import (
    decide,
    decide_methods,
    fit_postprocessor,
    not_applicable,
    row_groups,
)
from biaslab.fairness.thresholds.odds import EqualizedOddsThresholds
from biaslab.fairness.thresholds.parity import (
    DemographicParityThresholds,
    EqualOpportunityThresholds,
)
from biaslab.fairness.thresholds.registry import METHODS, make_postprocessor
from biaslab.fairness.thresholds.single import FixedThreshold, YoudenThreshold

__all__ = [
    "METHODS",
    "DemographicParityThresholds",
    "EqualOpportunityThresholds",
    "EqualizedOddsThresholds",
    "FixedThreshold",
    "GroupIsotonic",
    "GroupTemperatureScaling",
    "NotApplicable",
    "YoudenThreshold",
    "cut_table",
    "decide",
    "decide_methods",
    "fit_postprocessor",
    "make_postprocessor",
    "not_applicable",
    "row_groups",
]
