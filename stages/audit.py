"""audit: counts, shares, label prevalence of every group and intersection, split balance,
Simpson's paradox check, small-group warnings, the images prepare left out by kind."""

import argparse
import sys
from pathlib import Path

import pandas as pd

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.data.audit import rejected_warnings, run_audit
from biaslab.data.group_keys import images_text
from stages import present_columns, run


def read_rejected(path: str) -> pd.DataFrame:
    """prepare's rejected.csv, as text (an empty ``table_row`` stays empty)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: missing; run the stage that writes it (dvc repro)")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", required=True)
    parser.add_argument("--bias", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--rejected", required=True, help="prepare's rejected.csv")
    parser.add_argument("--summary", required=True)
    parser.add_argument("--tables", required=True, help="folder for the audit CSV tables")
    args = parser.parse_args()
    cfg = load_section("audit")

    table = artifacts.read_rows(args.index, args.bias, args.split)
    attributes = present_columns(cfg.attributes, table, "audit", "not audited")
    summary, tables = run_audit(table, attributes, min_group_size=cfg.min_group_size,
                                level=cfg.level, min_effect=cfg.simpson_min_effect,
                                rejected=read_rejected(args.rejected))
    for name, frame in tables.items():
        artifacts.write_csv(frame, Path(args.tables) / f"{name}.csv")
    artifacts.write_json(summary, args.summary)
    for line in rejected_warnings(summary["rejected"]):
        print(f"audit: warning: {line}", file=sys.stderr)
    # every row, as summary['n'], and what the units are when they are not the images
    print(f"audit: {images_text(table)}, prevalence {summary['prevalence']:.3f}, "
          f"{summary['rejected']['n']} rejected at prepare, {len(summary['simpson'])} Simpson "
          f"flag(s), {len(summary['warnings'])} warning(s) -> {args.summary}")


if __name__ == "__main__":
    run(main, "audit")
