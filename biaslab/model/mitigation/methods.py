"""The in-training method of a scheme of ``weights.schemes``, and :func:`fit_scheme`, which
trains a model under any scheme: plain :func:`~biaslab.model.train.fit` for the weighting
schemes, with the method's hooks for groupdro, adversarial and domain_independent, twice for
jtt."""

from __future__ import annotations

import numpy as np

from biaslab.config import IN_TRAINING, MitigationConfig
from biaslab.model.batches import TrainData
from biaslab.model.mitigation.adversarial import Adversarial
from biaslab.model.mitigation.domain_independent import DomainIndependent
from biaslab.model.mitigation.groupdro import GroupDRO
from biaslab.model.mitigation.jtt import fit_jtt
from biaslab.model.train import Fitted, fit

GROUPED = ("groupdro", "adversarial", "domain_independent")  # need each training row's group


def build_method(scheme: str, config: MitigationConfig, groups: np.ndarray | None,
                 labels: np.ndarray):
    """The hooks of ``scheme``'s method for :func:`~biaslab.model.train.fit`, or None (a
    weighting scheme, or jtt, which is plain training twice).

    ``groups``: the group code (0..G-1) of each training row, needed by the grouped methods.

    Raises
    ------
    ValueError : a grouped method without ``groups``.
    """
    if scheme not in GROUPED:
        return None
    if groups is None:
        raise ValueError(f"weights.schemes: {scheme} needs the group of each training row "
                         "(weights.groups), got none")
    groups = np.asarray(groups, dtype=np.int64)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if scheme == "groupdro":
        by_class = config.groupdro_by == "group_class"
        cells = GroupDRO.cells(groups, labels, by_class)
        counts = np.bincount(cells, minlength=2 * n_groups if by_class else n_groups)
        return GroupDRO(counts, step_size=config.groupdro_step_size,
                        adjustment=config.groupdro_adjustment, by_class=by_class)
    if scheme == "adversarial":
        return Adversarial(n_groups, weight=config.adversary_weight,
                           hidden=config.adversary_hidden)
    return DomainIndependent(n_groups)


def fit_scheme(scheme: str, pixels: np.ndarray, train: TrainData, val: TrainData, config,
               bias, *, mitigation: MitigationConfig | None = None, **fit_kwargs) -> Fitted:
    """Train under ``scheme``: ``train.weights`` are its weights (uniform for a method) and
    ``train.groups`` the group codes of its rows (for the grouped methods); ``fit_kwargs``:
    the rest of :func:`~biaslab.model.train.fit`'s. ``mitigation``: the methods' params (None:
    the defaults)."""
    mitigation = MitigationConfig() if mitigation is None else mitigation
    if scheme == "jtt":
        fitted, _ = fit_jtt(pixels, train, val, config, bias, epochs=mitigation.jtt_epochs,
                            factor=mitigation.jtt_upweight, **fit_kwargs)
        return fitted
    method = build_method(scheme, mitigation, train.groups, train.labels)
    if method is None:
        return fit(pixels, train, val, config, bias, **fit_kwargs)
    return fit(pixels, train, val, config, bias, method=method, **fit_kwargs)


__all__ = ["GROUPED", "IN_TRAINING", "build_method", "fit_scheme"]
