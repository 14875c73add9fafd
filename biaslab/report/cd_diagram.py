"""The critical-difference diagram of a rank test (Demšar 2006, Fig. 1-2).

The methods sit on an axis of mean ranks (1, the best, on the left); a bar joins each widest
run of methods whose mean ranks lie within the Nemenyi critical difference CD of each other
(the test cannot tell them apart); CD itself is drawn above the axis. The control (plain
training) is written in bold.
"""

from __future__ import annotations

from biaslab.fairness.ranks import RankTest
from biaslab.report.figures import _pyplot, png


def cliques(ranks: list[float], cd: float) -> list[tuple[int, int]]:
    """The maximal runs ``(first, last)`` (indices into ``ranks``, sorted ascending) of at least
    two methods whose mean ranks differ by less than ``cd``."""
    runs = []
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return runs


def cd_diagram(result: RankTest) -> bytes:
    """The diagram of ``result`` as PNG bytes."""
    plt = _pyplot()
    names = list(result.ranks["method"])
    ranks = [float(r) for r in result.ranks["mean_rank"]]
    k = result.n_methods
    half = (len(names) + 1) // 2
    runs = cliques(ranks, result.cd)
    top = 1.0 + 0.2 * len(runs)  # the labels' first row, below the cliques' bars
    fig, ax = plt.subplots(figsize=(9.0, 1.4 + 0.3 * (half + top)))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(half + top + 0.2), 1.6)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.12, color="black", lw=1)
        ax.text(r, 0.2, str(r), ha="center", va="bottom", fontsize=9)
    ax.hlines(1.2, 1, 1 + result.cd, color="black", lw=1.5)  # the critical difference
    ax.vlines([1, 1 + result.cd], 1.12, 1.28, color="black", lw=1.5)
    ax.text(1 + result.cd / 2, 1.32, f"CD = {result.cd:.2f} (Nemenyi, α = {result.level:g})",
            ha="center", va="bottom", fontsize=9)
    for i, (name, rank) in enumerate(zip(names, ranks, strict=True)):
        left = i < half
        row = -(i if left else len(names) - 1 - i) - top
        end = 0.5 if left else k + 0.5
        ax.plot([rank, rank, end], [0, row, row], color="0.3", lw=0.8)
        ax.text(end + (0.02 if left else -0.02), row + 0.08, f"{name} ({rank:.2f})",
                ha="left" if left else "right", va="bottom", fontsize=9,
                fontweight="bold" if name == result.control else "normal")
    for level, (a, b) in enumerate(runs):
        y = -0.3 - 0.2 * level
        ax.hlines(y, ranks[a] - 0.03, ranks[b] + 0.03, color="black", lw=3)
    ax.set_title(f"Mean rank on {result.figure} over {result.n_blocks} blocks "
                 f"(Friedman p = {result.friedman_p:.2g})", fontsize=10)
    return png(fig)
