"""The comparison of two models (:mod:`biaslab.audit.compare`) in plain sentences, for the
report's section "A against B": which model is fairer on each gap, by how much, and whether
the data can tell."""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.audit.compare import on_scale
from biaslab.fairness.costs import BEST_AT_ONE, cost_text, fairness_cost


def sentences(table: pd.DataFrame, *, level: float = 0.95) -> list[dict]:
    """The comparison in plain sentences, per method: ``{"method", "summary", "lines"}``.

    ``table`` is :func:`correct_together`'s. Each line says, for a gap, which model is fairer,
    by how much (the fall of its cost, :func:`biaslab.fairness.costs.cost_text`) and whether
    the data can tell; for a figure, B against A and whether the data can tell.
    """
    out = []
    for method, rows in table.groupby("method", sort=False):
        lines = [_sentence(r, 1 - level) for r in rows.itertuples()]
        gaps = rows[rows["figure"].str.contains(".", regex=False) & (rows["note"] == "")]
        a, b = rows["a_model"].iloc[0], rows["b_model"].iloc[0]
        counts = {x: (int((gaps["fairer"] == x).sum()),
                      int(((gaps["fairer"] == x) & gaps["tells"]).sum())) for x in (a, b)}
        summary = (f"Of {len(gaps)} gaps compared, {b} is fairer on {counts[b][0]} (the data "
                   f"can tell on {counts[b][1]}) and {a} on {counts[a][0]} (the data can tell "
                   f"on {counts[a][1]}).")
        out.append({"method": method, "summary": summary, "lines": lines})
    return out


def _sentence(r, alpha: float) -> str:
    a, b = r.a_model, r.b_model
    if r.note:
        return f"{r.figure}: not compared: {r.note}."
    interval = (f" [{r.difference_lo:+.3f}, {r.difference_hi:+.3f}]"
                if np.isfinite(r.difference_lo) else "")
    tested = f", adjusted p {r.p_adj:.3g}" if np.isfinite(r.p_adj) else ", no permutation test"
    why = [w for w, bad in (("the interval includes 0", not r.tells and interval
                             and r.difference_lo <= 0 <= r.difference_hi),
                            (f"adjusted p >= {alpha:g}", np.isfinite(r.p_adj)
                             and r.p_adj >= alpha), ("no interval", not interval)) if bad]
    verdict = "the data can tell" if r.tells else f"the data cannot tell ({', '.join(why)})"
    change = f"{b} - {a} = {r.difference:+.3f}{interval}{tested}: {verdict}."
    if "." not in r.figure:
        return f"{r.figure}: {b} {r.B:.3f} against {a} {r.A:.3f}; {change}"
    name = r.figure.rsplit(".", 1)[-1]
    if not r.fairer:
        return f"{r.figure}: {a} and {b} are as fair ({r.A:.3f} and {r.B:.3f}); {change}"
    mine, other, theirs = (r.B, a, r.A) if r.fairer == b else (r.A, b, r.B)
    cost_mine, cost_other = fairness_cost(pd.Series([mine, theirs]), name)
    side = on_scale(r.figure, np.array([r.A, r.B], dtype=float)) - (
        1.0 if name in BEST_AT_ONE else 0.0)
    # a gap that moved well past parity: its signed difference overstates the gain in fairness
    across = (" The gaps lie on either side of parity: the difference says how far the gap "
              "moved, not which is nearer." if name not in BEST_AT_ONE
              and side[0] * side[1] < 0 and cost_mine >= cost_other / 2 else "")
    return (f"{r.figure}: {r.fairer} is fairer, {mine:.3f} against {other}'s {theirs:.3f} "
            f"({cost_text(r.figure)} {cost_mine:.3f} against {cost_other:.3f}, "
            f"{cost_other - cost_mine:.3f} closer to the ideal); {change}{across}")
