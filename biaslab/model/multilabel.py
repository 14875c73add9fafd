"""Several findings in one model: K sigmoid outputs, each a binary task of its own.

The loss of an image is the mean over its findings of each finding's binary cross-entropy (or
focal loss), the positive term of finding k weighted by ``pos_weight[k]``:

.. math:: \\ell(x, y) = \\frac{1}{K} \\sum_{k=1}^{K} \\big(w_k y_k + (1 - y_k)\\big)\\,
   \\ell_k(z_k, y_k)

which for the binary cross-entropy :math:`\\ell_k = -y_k \\log \\sigma(z_k) - (1 - y_k)
\\log(1 - \\sigma(z_k))` is torch's ``BCEWithLogitsLoss(pos_weight=w)`` (the CheXNet recipe,
Rajpurkar et al. 2017, weighted per finding). The validation loss that picks the checkpoint is
the unweighted mean over findings, so that a rare finding's weight does not move the choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def positive_weights(spec: str | dict, findings: Sequence[str], labels: np.ndarray
                     ) -> np.ndarray:
    """The weight of each finding's positive images in its loss (``train.pos_weight``).

    Parameters
    ----------
    spec : {"none", "balanced"} or dict
        none: 1 each; balanced: :math:`w_k = n^-_k / n^+_k`, the negatives over the positives
        of finding k in ``labels`` (1 for a finding without a positive or without a negative:
        there is nothing to balance); a mapping: the weight of each finding it names, 1 for
        the others.
    findings : sequence of str
        The findings, in the order of the columns of ``labels``.
    labels : ndarray (N, K)
        The training split's 0/1 labels.

    Raises
    ------
    ValueError : the mapping names a finding that is not among ``findings``.
    """
    k = len(findings)
    if spec == "none":
        return np.ones(k)
    if spec == "balanced":
        pos = labels.sum(axis=0).astype(float)
        neg = len(labels) - pos
        return np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0)
    unknown = sorted(set(spec) - set(findings))
    if unknown:
        raise ValueError(f"train.pos_weight names {unknown}, not among the findings of the "
                         f"run: {', '.join(findings)}")
    return np.array([float(spec.get(f, 1.0)) for f in findings])


def per_finding_loss(loss_fn: LossFn, pos_weight: np.ndarray) -> LossFn:
    """``loss_fn`` (element-wise, as :func:`biaslab.model.train.per_sample_loss` gives) as a
    per-image loss on (B, K) logits: the mean over findings, positives weighted by
    ``pos_weight`` (K,)."""
    weight = torch.as_tensor(pos_weight, dtype=torch.float32)

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = weight.to(logits.device)
        logits = logits.reshape(y.shape)  # (B,) from a model of one output (one finding)
        return ((w * y + (1 - y)) * loss_fn(logits, y)).mean(dim=1)

    return loss


def multilabel_figures(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Loss, accuracy and balanced accuracy of (N, K) ``logits`` at threshold 0.5, each the
    mean over findings (a finding with one class only counts in the balanced accuracy by the
    recall of that class)."""
    t_logits = torch.from_numpy(logits)
    t_labels = torch.from_numpy(labels.astype(np.float32))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(t_logits, t_labels,
                                                               reduction="none")
    correct = (logits > 0) == labels
    baccs = [np.mean([correct[labels[:, k] == c, k].mean() for c in (0, 1)
                      if np.any(labels[:, k] == c)]) for k in range(labels.shape[1])]
    return {"loss": bce.mean(dim=0).mean().item(), "acc": float(correct.mean()),
            "bacc": float(np.mean(baccs))}


def degenerate_findings(val_logits: np.ndarray, val_labels: np.ndarray, findings: Sequence[str],
                        check: Callable[..., str | None]) -> str | None:
    """Why a K-output model looks like it learnt nothing, or None: not finite anywhere, or
    every finding degenerate by ``check`` (:func:`biaslab.model.train.degenerate`, per column).

    A rare finding (Hernia, 0.2 % of NIH's images) predicted negative for every image is no
    sign on its own: only all K failing is.
    """
    if not np.isfinite(val_logits).all():
        return "validation scores are not finite: training diverged"
    why = [check(val_logits[:, k], val_labels[:, k], []) for k in range(len(findings))]
    if all(why):
        return f"every finding looks unlearnt ({findings[0]}: {why[0]})"
    return None


def any_finding(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (K outputs) made the one "any finding" classifier, in place: its output is the
    largest of its K logits.

    A finding is called when its score passes the threshold, so "any finding" is called exactly
    when the highest score does (one threshold for all, ``postprocess.fixed_threshold``): the
    explain stage's maps, robustness and signatures of a multi-label run explain that decision,
    the one whose misses are underdiagnosis. A forward hook, not a wrapper, so that the module
    names the signatures' layers are given stay the model's own.
    """
    model.register_forward_hook(lambda _module, _inputs, out: out.max(dim=1).values)
    model.outputs = 1
    return model
