"""prepare: read the source, store square grayscale uint8 pixels once, list rejected images."""

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.data.prepare import write_pixels
from biaslab.data.sources import load_source
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("pixels", "index", "rejected", "issues"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    data, prepare = load_section("data"), load_section("prepare")

    root = Path(data.root).expanduser() if data.root else None  # relative: to the repo root
    src = load_source(data, root)
    with tqdm(total=len(src.index), unit="img", file=sys.stderr, desc="prepare",
              smoothing=0.1, disable=None) as bar:  # None: a bar on a terminal only
        index, rejected = write_pixels(
            src, args.pixels, size=prepare.size, workers=prepare.workers,
            max_rejected_fraction=prepare.max_rejected_fraction, min_side=prepare.min_side,
            max_aspect=prepare.max_aspect, progress=bar.update,
            where=f"data.root = {root}" if data.source != "digits" else "data.source = digits")
    index.insert(0, "row", np.arange(len(index), dtype=np.int64))
    artifacts.write_parquet(index, args.index)
    artifacts.write_csv(rejected, args.rejected)
    artifacts.write_csv(src.issues, args.issues)
    for issue in src.issues.head(10).itertuples():
        print(f"prepare: warning: table row {issue.table_row}, {issue.column} = "
              f"{issue.value!r}: {issue.reason} (left missing)", file=sys.stderr)
    duplicates = int(rejected["reason"].str.startswith("duplicate of").sum())
    print(f"prepare: {len(index)} images ({data.source}) at {prepare.size}x{prepare.size}, "
          f"prevalence {index['label'].mean():.3f}, {len(rejected)} rejected"
          f"{f' ({duplicates} duplicate(s))' if duplicates else ''}, "
          f"{len(src.issues)} metadata issue(s) -> {args.pixels}")


if __name__ == "__main__":
    run(main, "prepare")
