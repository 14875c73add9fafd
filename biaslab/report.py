"""One self-contained HTML page: headline, grid, per-group table, training curves, the data audit.

Figures are PNGs embedded as data URIs, so the page can be mailed or archived as a single file.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
.warn { color: #a40; } td small { display: block; color: #666; white-space: nowrap; }
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return '<img alt="figure" src="data:image/png;base64,' + base64.b64encode(
        buf.getvalue()).decode() + '">'


def _fmt(value, lo=None, hi=None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    text = f"{value:.3f}"
    if lo is not None and not (np.isnan(lo) or np.isnan(hi)):
        text += f" <small>[{lo:.3f}, {hi:.3f}]</small>"
    return text


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in df.itertuples(False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _with_ci(df: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Columns ``M`` (+ ``M_lo``/``M_hi``) of ``df`` rendered as 'value [lo, hi]' strings."""
    out = df[keys].astype(str).copy()
    for m in metrics:
        if m in df.columns:
            lo, hi = df.get(f"{m}_lo"), df.get(f"{m}_hi")
            out[m] = [
                _fmt(v, None if lo is None else lo.iloc[i], None if hi is None else hi.iloc[i])
                for i, v in enumerate(df[m])
            ]
    return out


def curves_figure(curves: dict[str, pd.DataFrame]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for scheme, df in curves.items():
        axes[0].plot(df["epoch"], df["train_loss"], "--", label=f"{scheme} train")
        axes[0].plot(df["epoch"], df["val_loss"], label=f"{scheme} val")
        axes[1].plot(df["epoch"], df["val_acc"], label=f"{scheme} val acc")
    axes[0].set(xlabel="epoch", ylabel="loss")
    axes[1].set(xlabel="epoch", ylabel="validation accuracy")
    for ax in axes:
        ax.legend(fontsize=7)
    html_img = _png(fig)
    plt.close(fig)
    return html_img


def examples_figure(images: np.ndarray, titles: list[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(1.4 * len(images), 1.7), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles, strict=True):
        ax.imshow(img, cmap="gray")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    html_img = _png(fig)
    plt.close(fig)
    return html_img


def _audit_extras(audit: dict) -> str:
    """Imbalance ratios, split balance and Simpson flags of the audit summary, if present."""
    parts = []
    if audit.get("imbalance"):
        ratios = ", ".join(f"{a} {r:.2f}" for a, r in audit["imbalance"].items())
        parts.append(f"<p>Imbalance (largest / smallest group): {html.escape(ratios)}.</p>")
    if audit.get("balance"):
        gaps = "; ".join(f"{s}: " + ", ".join(f"{a} {g:.3f}" for a, g in by.items())
                         for s, by in audit["balance"].items())
        parts.append("<p>Largest share difference between each split and the whole: "
                     f"{html.escape(gaps)}.</p>")
    if audit.get("simpson"):
        parts.append("<p>Simpson's paradox check (prevalence difference of a group vs the "
                     "rest, overall and within strata of another attribute):</p>"
                     + _table(pd.DataFrame(audit["simpson"])))
    return "".join(parts)


def _insufficient(grid: pd.DataFrame) -> list[str]:
    """The figures left empty for too few cases, one line per reason (test group sizes do not
    depend on the method, so a reason usually holds for every pair: said once)."""
    pairs: dict[str, list[str]] = {}
    for _, row in grid.iterrows():
        for col in (c for c in grid.columns if c.endswith("insufficient")):
            if isinstance(row[col], str) and row[col]:
                pairs.setdefault(f"{col}: {row[col]}", []).append(
                    f"{row['scheme']} / {row['method']}")
    return [f"{'every model' if len(who) == len(grid) else ', '.join(who)}: {text}"
            for text, who in pairs.items()]


def build_report(
    *, grid: pd.DataFrame, per_group: pd.DataFrame, curves: dict[str, pd.DataFrame],
    audit: dict, prevalence: pd.DataFrame, examples: str = "", groups: list[str],
) -> str:
    """Assemble the report page from the evaluate, train and audit outputs."""
    gap_cols = [f"{a}.{m}" for a in groups for m in (
        "disparate_impact", "base_disparate_impact", "excess_disparate_impact",
        "statistical_parity_difference", "equal_opportunity_difference",
        "equalized_odds_difference", "worst_group_balanced_accuracy", "auc_gap")]
    shifted = [c for c in ("shifted.accuracy", "shifted.balanced_accuracy") if c in grid]
    metrics = [m for m in ("accuracy", "balanced_accuracy", "auc", "flip_rate", *shifted,
                           *gap_cols, "fairness_cost", "val.balanced_accuracy",
                           "val.fairness_cost", "pareto", "recommended")
               if m in grid.columns]
    cells = _with_ci(grid, ["scheme", "method"], metrics)
    # metrics as rows, one column per (scheme, method): stays readable as schemes are added
    headline = cells[metrics].T
    headline.columns = [f"{s} / {m}" for s, m in zip(cells["scheme"], cells["method"], strict=True)]
    headline.insert(0, "metric", metrics)
    sizes = grid[["scheme", "method", *[f"{a}.groups" for a in groups]]]
    counts = [c for c in ("n", "patients", "positives", "negatives") if c in per_group]
    groups_tbl = _with_ci(
        per_group, ["scheme", "method", "set", "group", *counts],
        ["accuracy", "balanced_accuracy", "tpr", "fpr", "selection_rate", "auc",
         "calibration_error", "flip_rate"],
    )
    audit_rows = prevalence[prevalence["split"].isin(["all", "train", "val", "test"])]
    # intersections (a&b) only over the whole data: per split they would swamp the table
    audit_rows = audit_rows[(audit_rows["split"] == "all")
                            | ~audit_rows["attribute"].str.contains("&", regex=False)]
    audit_tbl = _with_ci(audit_rows, ["split", "attribute", "group", "n"], ["prevalence"])
    warnings = "".join(f"<li class=warn>{html.escape(w)}</li>" for w in audit["warnings"])
    audit_more = _audit_extras(audit)
    model_notes = "".join(
        f"<li class=warn>{html.escape(f'{r.scheme} / {r.method}: {r.warning}')}</li>"
        for r in grid.itertuples() if isinstance(getattr(r, "warning", None), str) and r.warning)
    model_notes += "".join(f"<li>{html.escape(note)}</li>" for note in _insufficient(grid))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>biaslab report</title>
<style>{CSS}</style></head><body>
<h1>biaslab report: can we trust this classifier?</h1>
<p class="note">Test split, one column per weighting scheme and threshold method. Brackets are
bootstrap confidence intervals (resampling whole patients, or images when there are no patient
ids, within each group); an empty cell is a figure with too few cases, listed under the table.
<b>DI</b> = P(ŷ=1|g)/P(ŷ=1|reference), the reference being the last group (S=1);
<b>flip rate</b> = share of test images whose decision changes when the
injected bias S is forced from 0 to 1; <b>shifted</b> = the same test images with S drawn
independently of the label: a large drop from accuracy means the model learnt the shortcut.
<b>base DI</b> is what a perfect classifier scores (the labels' own disparity) and <b>excess
DI</b> = DI / base DI what the model adds. <b>pareto</b> and <b>recommended</b> are chosen on
the validation split (val.* rows), never on test.</p>
<h2>Headline</h2>{_table(headline)}
<ul>{model_notes}</ul>
<p class="note">Group sizes behind the gaps:</p>{_table(sizes)}
<h2>Training curves</h2>{curves_figure(curves) if curves else "<p>none</p>"}
<h2>Per group</h2>{_table(groups_tbl)}
<h2>Data audit</h2>
<p>{audit["n"]} images, prevalence {audit["prevalence"]:.3f}; splits {audit["splits"]}.</p>
{audit_more}<ul>{warnings}</ul>{_table(audit_tbl)}
<h2>Examples</h2>{examples}
<h2>Bias sweep</h2>
<p><code>make sweep</code> reruns the pipeline as DVC experiments over bias strengths and training
seeds and draws DI, excess DI, flip rate and shifted-test accuracy against the bias strength, per
scheme, with intervals: <a href="sweep.png">sweep.png</a> (beside this page, once the sweep has
run); every figure with its interval per experiment, scheme, method and seed:
<code>metrics/sweep.csv</code>.</p>
<p class="note">Made by biaslab from the DVC pipeline's artifacts (metrics/*.json, *.csv).</p>
</body></html>
"""
