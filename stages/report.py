"""report: one self-contained HTML page from the metrics, curves, audit and a few images."""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from biaslab import io
from biaslab.bias import model_inputs
from biaslab.config import load_section
from biaslab.report import build_report, examples_figure
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("grid", "groups", "curves", "audit", "audit_tables", "pixels", "index", "bias",
                 "out"):
        parser.add_argument(f"--{name.replace('_', '-')}", required=True)
    args = parser.parse_args()
    schemes = load_section("weights").schemes
    groups, bias_cfg = load_section("evaluate").groups, load_section("bias")

    curves = {s: pd.read_csv(Path(args.curves) / s / "curves.csv") for s in schemes}
    # a few images as the model sees them: the image and, with S=1, the noise channel
    table = io.read_rows(args.index, args.bias)
    pick = table.groupby(["label", "s"] if "s" in table else ["label"]).head(1).head(6)
    pixels = io.read_pixels(args.pixels, n_rows=len(table))
    s = pick["s"].to_numpy() if "s" in pick else None
    x = model_inputs(pixels, pick["row"].to_numpy(), s, bias_cfg.seed)
    panels = np.concatenate(list(x.transpose(1, 0, 2, 3)), axis=-1)  # image | bias channel
    titles = [f"y={r.label}" + (f" S={r.s}" if s is not None else "") for r in pick.itertuples()]
    page = build_report(
        grid=pd.read_csv(args.grid), per_group=pd.read_csv(args.groups), curves=curves,
        audit=io.read_json(args.audit),
        prevalence=pd.read_csv(Path(args.audit_tables) / "prevalence.csv"),
        examples=examples_figure(panels, titles), groups=groups)
    io.write_text(page, args.out)
    print(f"report: {len(schemes)} scheme(s) -> {Path(args.out).resolve()}")


if __name__ == "__main__":
    run(main, "report")
