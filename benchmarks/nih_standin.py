"""Stand-in pixels for the real NIH ChestX-ray14 table: the NIH layout without its 45 GB of images.

Writes ``ROOT/Data_Entry_2017_v2020.csv`` (the table's first ``--rows`` rows, whole patients;
all 112,120 without ``--rows``) and one PNG per row under ``ROOT/images_001/images/``: the
layout biaslab's nih source reads (docs/data-sources.md). Each image is noise with, for each of
its findings, a bright square in that finding's own cell of a 4 x 4 grid (the 14 findings in
NIH order, cells 0-13), so a model can learn every finding and a fairness audit has real
labels, patients, sexes and ages to work on. The real table stays where it is (``--table``,
default ``../shared/data/nih_metadata/``); nothing is written into the project.

    python -m benchmarks.nih_standin --root /tmp/nih [--rows 4000] [--size 32]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from biaslab.data.finding_names import NIH_FINDINGS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih_metadata"


def standin(labels: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image: noise, and a bright square in the cell of each finding of ``labels``
    ("A|B", or "No Finding")."""
    pixels = rng.normal(90, 20, (size, size))
    cell = size // 4
    for finding in labels.split("|"):
        if finding in NIH_FINDINGS:
            i, j = divmod(NIH_FINDINGS.index(finding), 4)
            pixels[i * cell:(i + 1) * cell, j * cell:(j + 1) * cell] += 90
    return np.clip(pixels, 0, 255).astype(np.uint8)


def whole_patients(table: pd.DataFrame, rows: int | None) -> pd.DataFrame:
    """The first ``rows`` rows, extended to the end of the last patient's images (a patient's
    images stay together, as the split needs them)."""
    if rows is None or rows >= len(table):
        return table
    last = table["Patient ID"].iloc[rows - 1]
    return table.iloc[:rows].pipe(lambda head: pd.concat(
        [head, table.iloc[rows:][table["Patient ID"].iloc[rows:] == last]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the folder to write (data.root)")
    parser.add_argument("--table", default=str(SHARED),
                        help="the folder of the real Data_Entry_2017*.csv[.gz] "
                             "(default: %(default)s)")
    parser.add_argument("--rows", type=int, help="the first ROWS rows, whole patients "
                                                 "(default: all)")
    parser.add_argument("--size", type=int, default=32, help="image side (default: 32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    found = sorted(Path(args.table).glob("Data_Entry_2017*.csv*"))
    if not found:
        sys.exit(f"nih_standin: no Data_Entry_2017*.csv[.gz] in {args.table} (--table)")
    table = whole_patients(pd.read_csv(found[0]), args.rows)
    root = Path(args.root)
    images = root / "images_001" / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, labels in zip(table["Image Index"], table["Finding Labels"], strict=True):
        Image.fromarray(standin(labels, args.size, rng)).save(images / name)
    table.to_csv(root / "Data_Entry_2017_v2020.csv", index=False)
    print(f"nih_standin: {len(table)} images of {table['Patient ID'].nunique()} patients "
          f"({args.size}x{args.size}) -> {root}")


if __name__ == "__main__":
    main()
