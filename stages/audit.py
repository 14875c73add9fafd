"""audit: counts and label prevalence of every group, overall and per split."""

import argparse
from pathlib import Path

from biaslab import io
from biaslab.audit import audit_summary, prevalence_table
from biaslab.config import load_section
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", required=True)
    parser.add_argument("--bias", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--tables", required=True, help="folder for the audit CSV tables")
    args = parser.parse_args()
    cfg = load_section("audit")

    table = io.read_table(args.index, required=("row", "label"))
    table = table.merge(io.read_table(args.bias), on="row").merge(
        io.read_table(args.split, required=("row", "split")), on="row")
    missing = [a for a in cfg.attributes if a not in table.columns]
    if missing:
        raise ValueError(f"audit.attributes: {missing} not found; available: {list(table.columns)}")
    prevalence = prevalence_table(table, cfg.attributes)
    summary = audit_summary(prevalence, cfg.min_group_size)
    io.write_csv(prevalence, Path(args.tables) / "prevalence.csv")
    io.write_json(summary, args.summary)
    print(f"audit: {summary['n']} images, prevalence {summary['prevalence']:.3f}, "
          f"{len(summary['warnings'])} warning(s) -> {args.summary}")


if __name__ == "__main__":
    run(main, "audit")
