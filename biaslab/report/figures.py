"""The report's figures, drawn with matplotlib (Agg) and returned as PNG bytes.

Every function takes tables (see :mod:`biaslab.report.data`) and returns the PNG, or None when
there is nothing to draw. Figures are at most 11 inches wide at 100 dpi: 1,100 pixels, within
the page; the page scales them down further on a narrow screen.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from biaslab.fairness.costs import BEST_AT_ONE, RATIO_GAPS, cost_text
from biaslab.fairness.verdict import flag

DPI = 100
WIDTH = 11.0  # inches: the widest figure, 1,100 px at DPI
MARKERS = {"fixed": "o", "youden": "s", "demographic_parity": "^", "equal_opportunity": "v",
           "equalized_odds": "D"}
OTHER_MARKERS = "PXh*<>"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    """``fig`` as PNG bytes (closed afterwards); no timestamp, so a rerun gives the same file."""
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight",
                    metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def marker(method: str, methods: list[str]) -> str:
    """The marker of a threshold method, the same in every figure."""
    if method in MARKERS:
        return MARKERS[method]
    return OTHER_MARKERS[methods.index(method) % len(OTHER_MARKERS)]


def _colors(names) -> dict[str, tuple]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _grid_of(n: int, per_row: int = 3, height: float = 3.3):
    """``n`` axes, ``per_row`` to a row, the figure as wide as the page allows."""
    plt = _pyplot()
    cols = min(n, per_row)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(min(WIDTH, 3.7 * cols), height * rows),
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def roc(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The ROC curve (FPR, TPR at every distinct threshold, from (0, 0) to (1, 1)) and the AUC
    = P(score of a positive > score of a negative), ties counting 1/2 (the trapezoids of the
    curve). Needs both classes."""
    order = np.argsort(-score, kind="stable")
    y, score = np.asarray(y)[order].astype(float), score[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # end of each tied block
    tps, fps = np.cumsum(y)[last], np.cumsum(1 - y)[last]
    tpr, fpr = np.r_[0, tps / tps[-1]], np.r_[0, fps / fps[-1]]
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_figure(scores: pd.DataFrame, points: pd.DataFrame, attribute: str) -> bytes | None:
    """Per scheme, the test ROC curve of each group of ``attribute``, and each threshold
    method's operating point (FPR, TPR) in that group.

    ``scores``: ``scheme``, ``label``, ``score``, ``attribute``'s group column; ``points``:
    ``scheme``, ``method``, ``attribute``, ``group``, ``fpr``, ``tpr`` (from the decisions, so
    randomised methods sit where their decisions put them, off the curve).
    """
    if scores.empty:
        return None
    schemes = list(dict.fromkeys(scores["scheme"]))
    groups = sorted(scores[attribute].unique())
    colors = _colors(groups)
    methods = list(dict.fromkeys(points["method"])) if not points.empty else []
    fig, axes = _grid_of(len(schemes))
    for ax, scheme in zip(axes, schemes, strict=True):
        mine = scores[scores["scheme"] == scheme]
        for group in groups:
            part = mine[mine[attribute] == group]
            y = part["label"].to_numpy()
            if len(np.unique(y)) < 2:  # a curve needs both classes
                ax.plot([], [], color=colors[group], label=f"{group}: one class, no curve")
                continue
            fpr, tpr, auc = roc(y, part["score"].to_numpy(float))
            ax.plot(fpr, tpr, color=colors[group], lw=1.5,
                    label=f"{group} (AUC {auc:.2f}; {int(y.sum())}+ {int((1 - y).sum())}-)")
        here = points[(points["scheme"] == scheme) & (points["attribute"] == attribute)]
        for r in here.itertuples():
            if not (np.isnan(r.fpr) or np.isnan(r.tpr)):
                ax.plot(r.fpr, r.tpr, marker(r.method, methods), color=colors.get(r.group, "k"),
                        mec="black", ms=7, ls="none")
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="false positive rate",
               ylabel="true positive rate", title=scheme)
        ax.legend(fontsize=7, loc="lower right")
    _method_legend(fig, methods)
    return png(fig)


def _method_legend(fig, methods: list[str]) -> None:
    if not methods:
        return
    handles = [fig.axes[0].plot([], [], marker(m, methods), color="white", mec="black",
                                ls="none")[0] for m in methods]
    fig.legend(handles, methods, loc="lower center", ncol=min(len(methods), 5), fontsize=8,
               bbox_to_anchor=(0.5, -0.06), frameon=False, title="operating point of",
               title_fontsize=8)
    fig.tight_layout()


def calibration_figure(scores: pd.DataFrame, attribute: str, bins: int = 5) -> bytes | None:
    """Per scheme, the observed share of positives against the mean score in ``bins``
    equal-count score bins of each group of ``attribute`` (on the diagonal: calibrated)."""
    if scores.empty:
        return None
    schemes = list(dict.fromkeys(scores["scheme"]))
    groups = sorted(scores[attribute].unique())
    colors = _colors(groups)
    fig, axes = _grid_of(len(schemes))
    for ax, scheme in zip(axes, schemes, strict=True):
        mine = scores[scores["scheme"] == scheme]
        for group in groups:
            part = mine[mine[attribute] == group].sort_values("score")
            chunks = [c for c in np.array_split(np.arange(len(part)), min(bins, len(part)))
                      if len(c)]
            mean = [part["score"].iloc[c].mean() for c in chunks]
            observed = [part["label"].iloc[c].mean() for c in chunks]
            ax.plot(mean, observed, "o-", color=colors[group], ms=4,
                    label=f"{group} ({len(part)} images)")
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="mean score in bin",
               ylabel="share of positives", title=scheme)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return png(fig)


def confusion_figure(counts: pd.DataFrame, attribute: str) -> bytes | None:
    """One 2x2 confusion matrix per (scheme, method) x group of ``attribute``: rows the pairs,
    columns the groups. ``counts``: ``scheme``, ``method``, ``attribute``, ``group``, ``tp``,
    ``fp``, ``tn``, ``fn``. Each cell shows its count and its share of the row's true class."""
    plt = _pyplot()
    counts = counts[counts["attribute"] == attribute]
    if counts.empty:
        return None
    pairs = list(dict.fromkeys(zip(counts["scheme"], counts["method"], strict=True)))
    groups = sorted(counts["group"].unique())
    size = min(1.9, WIDTH / max(len(groups), 1))
    fig, axes = plt.subplots(len(pairs), len(groups), squeeze=False,
                             figsize=(size * len(groups) + 1.6, 1.75 * len(pairs)))
    for i, pair in enumerate(pairs):
        for j, group in enumerate(groups):
            ax = axes[i, j]
            row = counts[(counts["scheme"] == pair[0]) & (counts["method"] == pair[1])
                         & (counts["group"] == group)]
            if row.empty:
                ax.axis("off")
                continue
            r = row.iloc[0]
            cells = np.array([[r.tn, r.fp], [r.fn, r.tp]], dtype=float)  # rows: y = 0, 1
            totals = cells.sum(axis=1, keepdims=True)
            shares = np.divide(cells, totals, out=np.zeros_like(cells), where=totals > 0)
            ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
            for (a, b), n in np.ndenumerate(cells):
                ax.text(b, a, f"{int(n)}\n{shares[a, b]:.0%}", ha="center", va="center",
                        fontsize=7, color="white" if shares[a, b] > 0.6 else "black")
            ax.set_xticks([0, 1], ["ŷ=0", "ŷ=1"], fontsize=7)
            ax.set_yticks([0, 1], ["y=0", "y=1"], fontsize=7)
            if i == 0:
                ax.set_title(group, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{pair[0]}\n{pair[1]}", fontsize=7)
    fig.tight_layout()
    return png(fig)


def tradeoff_figure(grid: pd.DataFrame, gap: str) -> bytes | None:
    """Balanced accuracy against the fairness gap ``gap`` (a grid column) for every
    (scheme, method): on validation, where the Pareto front and the recommended pair are
    chosen (fairness cost, no intervals), and on test, with the intervals of both figures."""
    plt = _pyplot()
    need = {"balanced_accuracy", gap}
    if not need <= set(grid.columns) or grid[list(need)].isna().all().all():
        return None
    schemes = list(dict.fromkeys(grid["scheme"]))
    methods = list(dict.fromkeys(grid["method"]))
    colors = _colors(schemes)
    pareto = flag(grid, "pareto").to_numpy()
    recommended = flag(grid, "recommended").to_numpy()
    has_val = {"val.balanced_accuracy", "val.fairness_cost"} <= set(grid.columns)
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(WIDTH * (1 if has_val else 0.5),
                                                               4.2), squeeze=False)
    axes = list(axes.flat)
    if has_val:
        _tradeoff_val(axes[0], grid, pareto, recommended, colors, methods, gap)
    ax = axes[-1]
    for i, r in enumerate(grid.itertuples()):
        x, y = grid[gap].iloc[i], grid["balanced_accuracy"].iloc[i]
        if np.isnan(x) or np.isnan(y):
            continue
        xerr = _err(grid, gap, i)
        yerr = _err(grid, "balanced_accuracy", i)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker(r.method, methods),
                    color=colors[r.scheme], ms=7, capsize=2, lw=0.8,
                    mec="black" if pareto[i] else colors[r.scheme])
        if recommended[i]:
            ax.plot(x, y, "*", ms=18, mfc="none", mec="black")
    name = gap.rpartition(".")[2]
    if name in RATIO_GAPS:  # parity at 1 (biaslab.fairness.costs: the cost's own definition)
        ax.axvspan(0.8, 1.25, color="green", alpha=0.08, label="four-fifths rule")
        ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    elif name not in BEST_AT_ONE:  # a difference: parity at 0
        ax.axvline(0.0, color="grey", lw=0.8, ls=":")
    ax.set(xlabel=f"{gap} (test, with interval)", ylabel="balanced accuracy (test)",
           title="test")
    handles = [plt.Line2D([], [], color=colors[s], lw=6) for s in schemes] + [
        plt.Line2D([], [], marker=marker(m, methods), color="white", mec="black", ls="none")
        for m in methods] + [plt.Line2D([], [], marker="*", ms=12, mfc="none", mec="black",
                                        ls="none")]
    fig.legend(handles, schemes + methods + ["recommended (on validation)"],
               loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    return png(fig)


def _tradeoff_val(ax, grid, pareto, recommended, colors, methods, gap) -> None:
    x, y = grid["val.fairness_cost"].to_numpy(float), grid["val.balanced_accuracy"].to_numpy(float)
    for i, r in enumerate(grid.itertuples()):
        if np.isnan(x[i]) or np.isnan(y[i]):
            continue
        ax.plot(x[i], y[i], marker(r.method, methods), color=colors[r.scheme], ms=7,
                mec="black" if pareto[i] else colors[r.scheme])
        if recommended[i]:
            ax.plot(x[i], y[i], "*", ms=18, mfc="none", mec="black")
    front = np.flatnonzero(pareto & ~np.isnan(x) & ~np.isnan(y))
    front = front[np.argsort(x[front])]
    if len(front):
        ax.step(x[front], y[front], where="post", color="black", lw=0.8, ls="--",
                label="Pareto front")
        ax.legend(fontsize=7, loc="lower right")
    ax.set(xlabel=f"fairness cost {cost_text(gap)} (validation)",
           ylabel="balanced accuracy (validation)", title="validation: the front and the pick")


def _err(grid: pd.DataFrame, column: str, i: int):
    """The asymmetric error bar of row ``i`` from ``column``'s ``_lo``/``_hi`` (None if none)."""
    lo, hi = grid.get(f"{column}_lo"), grid.get(f"{column}_hi")
    if lo is None or hi is None or np.isnan(lo.iloc[i]) or np.isnan(hi.iloc[i]):
        return None
    value = grid[column].iloc[i]
    return [[max(value - lo.iloc[i], 0)], [max(hi.iloc[i] - value, 0)]]


def curves_figure(curves: pd.DataFrame) -> bytes | None:
    """Training curves: loss (train dashed, validation solid) and validation balanced accuracy
    (or accuracy) per epoch; one line per scheme (and training seed, when there are several).
    ``curves``: ``scheme``, ``seed`` (optional), ``epoch``, ``train_loss``, ``val_loss``,
    ``val_bacc`` or ``val_acc``."""
    plt = _pyplot()
    if curves.empty:
        return None
    schemes = list(dict.fromkeys(curves["scheme"]))
    colors = _colors(schemes)
    several = "seed" in curves and curves["seed"].nunique() > 1
    score = "val_bacc" if "val_bacc" in curves else "val_acc"
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH * 0.9, 3.2))
    if "seed" not in curves:
        curves = curves.assign(seed=0)
    for (scheme, seed), df in curves.groupby(["scheme", "seed"], sort=False):
        name = f"{scheme} seed {seed}" if several else scheme
        axes[0].plot(df["epoch"], df["train_loss"], "--", color=colors[scheme], lw=1,
                     label=f"{name} train")
        axes[0].plot(df["epoch"], df["val_loss"], color=colors[scheme], lw=1.5,
                     label=f"{name} val")
        axes[1].plot(df["epoch"], df[score], color=colors[scheme], lw=1.5, label=name)
    axes[0].set(xlabel="epoch", ylabel="loss")
    axes[1].set(xlabel="epoch", ylabel="validation " + (
        "balanced accuracy" if score == "val_bacc" else "accuracy"))
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def examples_figure(images: np.ndarray, titles: list[str]) -> bytes | None:
    """A row of images (H, W), grey, each with its title."""
    plt = _pyplot()
    if len(images) == 0:
        return None
    fig, axes = plt.subplots(1, len(images), figsize=(min(WIDTH, 1.5 * len(images)), 1.8),
                             squeeze=False)
    for ax, img, title in zip(axes[0], images, titles, strict=True):
        ax.imshow(img, cmap="gray")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    return png(fig)
