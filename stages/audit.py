"""audit: counts, shares, label prevalence of every group and intersection, split balance,
Simpson's paradox check, small-group warnings."""

import argparse
from pathlib import Path

from biaslab import io
from biaslab.audit import run_audit
from biaslab.config import load_section
from stages import present_columns, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", required=True)
    parser.add_argument("--bias", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--tables", required=True, help="folder for the audit CSV tables")
    args = parser.parse_args()
    cfg = load_section("audit")

    table = io.read_rows(args.index, args.bias, args.split)
    attributes = present_columns(cfg.attributes, table, "audit", "not audited")
    summary, tables = run_audit(table, attributes, min_group_size=cfg.min_group_size,
                                level=cfg.level, min_effect=cfg.simpson_min_effect)
    for name, frame in tables.items():
        io.write_csv(frame, Path(args.tables) / f"{name}.csv")
    io.write_json(summary, args.summary)
    print(f"audit: {summary['n']} images, prevalence {summary['prevalence']:.3f}, "
          f"{len(summary['simpson'])} Simpson flag(s), {len(summary['warnings'])} warning(s) "
          f"-> {args.summary}")


if __name__ == "__main__":
    run(main, "audit")
