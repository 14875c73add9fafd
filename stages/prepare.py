"""prepare: read the source, store square grayscale uint8 pixels once, list rejected images."""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from biaslab import io
from biaslab.config import load_section
from biaslab.prepare import check_rejected, copy_rows, decode_source, prepare_arrays
from biaslab.sources import load_source
from stages import run


def write_pixels(src, size: int, workers: int, max_rejected: float, path: str):
    """Pixels of the source into ``path`` (atomically); returns the kept index and rejects."""
    if src.images is not None:
        io.write_npy(prepare_arrays(src.images, size), path)
        return src.index, src.rejected
    n = len(src.paths)
    with io.atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size))
        keep, rejected = decode_source(src, size, out, workers=workers)
        check_rejected(rejected, n + len(src.rejected), max_rejected)
        out.flush()
        if not keep.all():  # rows stay contiguous: copy the kept ones into a file of the right size
            raw = tmp.with_suffix(".raw")
            os.replace(tmp, raw)
            try:
                kept = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                                 shape=(int(keep.sum()), size, size))
                copy_rows(out, keep, kept)
                kept.flush()
            finally:
                raw.unlink()
    return src.index[keep].reset_index(drop=True), rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("pixels", "index", "rejected", "issues"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    data, prepare = load_section("data"), load_section("prepare")

    root = Path(data.root).expanduser() if data.root else None  # relative: to the repo root
    src = load_source(data, root)
    index, rejected = write_pixels(src, prepare.size, prepare.workers,
                                   prepare.max_rejected_fraction, args.pixels)
    index.insert(0, "row", np.arange(len(index), dtype=np.int64))
    io.write_parquet(index, args.index)
    io.write_csv(rejected, args.rejected)
    io.write_csv(src.issues, args.issues)
    for issue in src.issues.head(10).itertuples():
        print(f"prepare: warning: table row {issue.table_row}, {issue.column} = "
              f"{issue.value!r}: {issue.reason} (left missing)", file=sys.stderr)
    print(f"prepare: {len(index)} images ({data.source}) at {prepare.size}x{prepare.size}, "
          f"prevalence {index['label'].mean():.3f}, {len(rejected)} rejected, "
          f"{len(src.issues)} metadata issue(s) -> {args.pixels}")


if __name__ == "__main__":
    run(main, "prepare")
