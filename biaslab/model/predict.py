"""Scores of val and test rows, and the counterfactual scores with the bias forced off and on.

Inference only: the training loop imports this module, never the reverse, so editing the loop
does not rerun the predict stages.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from biaslab.data.bias import BiasSpec
from biaslab.model.batches import TrainData, batches


@torch.no_grad()
def predict_logits(model: torch.nn.Module, pixels: np.ndarray, data: TrainData, bias: BiasSpec,
                   batch_size: int, device: str | torch.device, amp: bool = False,
                   cache: torch.Tensor | None = None) -> np.ndarray:
    """Logits of every row of ``data``, in order, with the model in eval mode.

    ``amp``: bf16 autocast on CUDA (ignored elsewhere). ``cache``: the inputs of ``data`` from
    :func:`biaslab.model.batches.cached_inputs`, when already built.
    """
    device = torch.device(device)
    model.eval()
    out = []
    order = np.arange(len(data.rows))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        for _, x in batches(pixels, data, bias, batch_size, order, device, cache):
            out.append(model(x).float().cpu())
    return torch.cat(out).numpy() if out else np.empty(0, dtype=np.float32)


def predict_scores(
    model: torch.nn.Module,
    pixels: np.ndarray,
    table: pd.DataFrame,
    bias: BiasSpec,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    findings: list[str] | tuple[str, ...] = (),
) -> pd.DataFrame:
    """Score the rows of ``table`` (``row``, ``split``, ``label`` and ``s`` when injected).

    Returns ``row``, ``split``, ``score`` = P(y=1) and, when ``s`` is present, ``score_s0`` and
    ``score_s1``: the same image scored with S forced to 0 and to 1. ``bias``: how S is shown
    (as in training).

    With several ``findings`` (the model's K outputs, in order) the table is long: one row per
    (row, finding), rows in the order of ``table`` and, within one, the findings in theirs;
    the str column ``finding`` comes after ``row`` and each score is P(finding | image).

    Raises
    ------
    ValueError : the model takes another number of input channels than ``bias`` gives (a model
        trained with another ``bias.kind``).
    """
    rows = table["row"].to_numpy()
    labels = table["label"].to_numpy()
    has_s = "s" in table.columns
    channels = bias.channels if has_s else 1
    taken = getattr(model, "in_channels", channels)  # biaslab's models say how many they take
    if taken != channels:
        shown = f"bias.kind = {bias.kind}" + ("" if has_s else " and no s column")
        raise ValueError(f"the model takes {taken} input channel(s) but the inputs have "
                         f"{channels} ({shown}): a model trained with another bias; retrain it "
                         "(dvc repro train@SCHEME-SEED)")
    model = model.to(device)

    outputs = getattr(model, "outputs", 1)
    if outputs != (len(findings) or 1):
        raise ValueError(f"the model has {outputs} output(s) but {len(findings) or 1} "
                         f"finding(s) are scored ({list(findings)}): pass the findings the "
                         "checkpoint records")
    k = len(findings) or 1

    def score(s):
        data = TrainData(rows=rows, labels=labels, s=s)
        logits = predict_logits(model, pixels, data, bias, batch_size, device)
        # (N, K) row-major: the K findings of the first row, then the next row's
        return torch.sigmoid(torch.from_numpy(logits)).numpy().astype(np.float64).reshape(-1)

    out = pd.DataFrame({"row": np.repeat(rows, k), "split": np.repeat(table["split"].to_numpy(),
                                                                     k)})
    if findings:
        out.insert(1, "finding", np.tile(np.asarray(findings, dtype=object), len(rows)))
    out["score"] = score(table["s"].to_numpy() if has_s else None)
    if has_s:
        out["score_s0"] = score(np.zeros(len(rows), dtype=np.int8))
        out["score_s1"] = score(np.ones(len(rows), dtype=np.int8))
    return out
