"""prepare: read the source, store square grayscale uint8 pixels once, list rejected images."""

import argparse

import numpy as np
import pandas as pd

from biaslab import io
from biaslab.config import load_section
from biaslab.prepare import prepare_arrays
from biaslab.sources import load_digits_source
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pixels", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--rejected", required=True)
    args = parser.parse_args()
    data, prepare = load_section("data"), load_section("prepare")

    index, images = load_digits_source(data.negative, data.positive)
    pixels = prepare_arrays(images, prepare.size)
    index.insert(0, "row", np.arange(len(index), dtype=np.int64))
    rejected = pd.DataFrame({"source": pd.Series(dtype=str), "reason": pd.Series(dtype=str)})

    io.write_npy(pixels, args.pixels)
    io.write_parquet(index, args.index)
    io.write_csv(rejected, args.rejected)
    print(f"prepare: {len(index)} images ({data.source}) at {prepare.size}x{prepare.size}, "
          f"prevalence {index['label'].mean():.3f}, {len(rejected)} rejected -> {args.pixels}")


if __name__ == "__main__":
    run(main, "prepare")
