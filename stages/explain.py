"""explain@SCHEME: what the scheme's model looks at (attribution maps and the bias's share of
them, activation signatures) and how it holds up under rotation and noise."""

import argparse
import io as bytes_io
import os
from pathlib import Path

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.data.bias import BiasSpec
from biaslab.explain.pipeline import explain_model
from biaslab.explain.select import empty_note
from biaslab.model.checkpoint import load_checkpoint, load_findings
from biaslab.model.devices import pick_device
from biaslab.model.multilabel import any_finding
from stages import present_columns, run


def _png(figure) -> bytes:
    buffer = bytes_io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("scheme", "model", "pixels", "index", "bias", "split", "metrics", "figures"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    cfg, evaluate = load_section("explain"), load_section("evaluate")
    bias = BiasSpec.from_config(load_section("bias"))

    model, train_cfg = load_checkpoint(args.model)
    if load_findings(args.model):  # several findings: the "any finding" decision is explained
        model = any_finding(model)
    table = artifacts.read_rows(args.index, args.bias, args.split)
    pixels = artifacts.read_pixels(args.pixels, n_rows=len(table))
    groups = present_columns(evaluate.groups, table, "explain", "groups without it")
    columns = (["s"] if "s" in table else []) + [g for g in groups if g != "s"]
    result = explain_model(
        model, model_name=train_cfg.model, pixels=pixels, test=table[table["split"] == "test"],
        bias=bias, group_columns=columns, attributes=groups, config=cfg,
        threshold=load_section("postprocess").fixed_threshold,
        min_cell=evaluate.min_cell, device=pick_device(cfg.device, key="explain.device"))

    # everything is computed before the first write: a failure leaves the last good outputs
    metrics, figures = Path(args.metrics), Path(args.figures)
    tables = {"attribution": result.attribution.assign(scheme=args.scheme),
              "robustness": result.robustness.assign(scheme=args.scheme),
              "selection": result.selection, "cells": result.cells,
              **{f"signatures/{k}": getattr(result.signatures, k)
                 for k in ("layers", "silhouettes", "clusters", "flows", "anomalies")}}
    pngs = {name: _png(fig) for name, fig in result.figures.items()}
    for name, df in tables.items():
        artifacts.write_csv(df[["scheme", *df.columns.drop("scheme")]] if "scheme" in df else df,
                     metrics / f"{name}.csv")
    for name, data in pngs.items():
        artifacts.write_bytes(data, figures / f"{name}.png")
    artifacts.write_json(_manifest(pngs, metrics, figures, has_bias=bias.kind != "none"),
                  figures / "manifest.json")
    shares = "; bias share " + ", ".join(
        f"{r.group} {r.share:.2f} (area {r.area:.2f}, flip rate {r.flip_rate:.2f})"
        for r in result.attribution.itertuples() if r.group != "all") if bias.kind != "none" \
        and "s" in table else ""
    # one count, not one entry per cell (hundreds of characters on a real data set)
    note = empty_note(result.cells)
    empty = f" ({note}: see {metrics / 'cells.csv'})" if note else ""
    print(f"explain@{args.scheme}: {len(result.selection)} images mapped{empty}{shares}; "
          f"{len(result.signatures.layers)} layers clustered -> {metrics}, {figures}")


# what the report shows of this stage, in order: (kind, name, title, caption); a figure the
# stage did not draw (nothing to draw) is left out
ITEMS = [
    ("figure", "maps", "Attribution maps",
     "Test images per group x outcome (TP, FP, TN, FN; seeded, the same for every scheme), with "
     "what the model's decision rests on: occlusion sensitivity (red supports the decision, "
     "blue opposes it), the deconvnet-style map and Grad-CAM (captum). A patch bias is "
     "outlined in green."),
    ("table", "attribution", "Share of the decision that rests on the bias, beside the flip rate",
     "share: the bias region's share of the change in the decision's logit when bias-sized "
     "tiles are hidden one at a time (1: the model reads only the bias, 0: it ignores it); "
     "area: the share an even spread would give; share_lo / share_hi: the lowest and highest "
     "single image."),
    ("figure", "robustness", "Robustness: rotation and noise",
     "Accuracy and the fairness gaps per group on the test images rotated and with additive "
     "Gaussian noise (explain.rotations, explain.noise)."),
    ("figure", "sankey_label", "Activation signatures: classes across layers",
     "Test images' activations clustered per layer (PCA, then k-means with k chosen by "
     "silhouette); bands show how the images of each class move between clusters from layer "
     "to layer."),
    ("figure", "sankey_s", "Activation signatures: the bias S across layers",
     "The same clusters, the bands coloured by S: clusters that sort images by S rather than "
     "by class are the shortcut at work."),
    ("table", "signatures/clusters", "Clusters per layer: size and purity",
     "Each cluster's size and its purity by class and by group."),
    ("figure", "anomalies", "Anomalies",
     "Images in a cluster dominated by the other class, or far from every centroid."),
]


def _manifest(pngs: dict, metrics: Path, figures: Path, *, has_bias: bool) -> dict:
    """The report's list of this stage's figures and tables (paths relative to ``figures``)."""
    items = []
    for kind, name, title, caption in ITEMS:
        if kind == "figure" and name in pngs:
            items.append({"kind": kind, "title": title, "caption": caption,
                          "file": f"{name}.png"})
        elif kind == "table" and (has_bias or name != "attribution"):
            path = os.path.relpath(metrics / f"{name}.csv", figures)
            items.append({"kind": kind, "title": title, "caption": caption,
                          "file": Path(path).as_posix()})
    return {"items": items}


if __name__ == "__main__":
    run(main, "explain")
