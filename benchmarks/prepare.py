"""Benchmark: the prepare stage's decoding (biaslab.data.prepare.prepare_files) against the ideal.

Generates 1024x1024 grayscale PNGs and JPEGs (X-ray-like: smooth anatomy plus noise) in a
temporary folder, then measures

- the single-core rate: ``prepare_files(..., workers=1)`` in this process;
- the parallel rate: ``prepare_files(..., workers=cores)``, as the stage runs it;

and prints the ratio parallel / (cores x single-core). 1.0 is perfect scaling; the target is
>= 0.85. Run it on an otherwise idle machine:

    .venv/bin/python -m benchmarks.prepare [--n 192] [--size 256] [--workers 0]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from biaslab.data.prepare import prepare_files


def make_images(folder: Path, n: int, side: int = 1024, seed: int = 0) -> list[str]:
    """``n`` side x side images, alternately PNG (16-bit every 4th) and JPEG."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    paths = []
    for i in range(n):
        body = np.exp(-((xx - 0.5) ** 2 / 0.08 + (yy - 0.5 + 0.05 * rng.random()) ** 2 / 0.15))
        image = np.clip(200 * body + rng.normal(0, 12, (side, side)), 0, 255)
        if i % 2:
            path = folder / f"{i:05d}.jpg"
            Image.fromarray(image.astype(np.uint8)).save(path, quality=90)
        elif i % 4 == 0:
            path = folder / f"{i:05d}.png"  # 16-bit, as NIH-style exports sometimes are
            Image.fromarray((image * 257).astype(np.uint16)).save(path)
        else:
            path = folder / f"{i:05d}.png"
            Image.fromarray(image.astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def rate(paths: list[str], size: int, workers: int) -> float:
    """Images per second of prepare_files over ``paths``."""
    out = np.zeros((len(paths), size, size), dtype=np.uint8)
    start = time.perf_counter()
    reasons = prepare_files(paths, size, out, workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    if any(reasons):
        raise RuntimeError(f"benchmark images rejected: {set(reasons) - {None}}")
    return len(paths) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=192, help="images to generate")
    parser.add_argument("--size", type=int, default=256, help="prepare.size")
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    args = parser.parse_args()
    cores = args.workers or len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.n)
        rate(paths[:8], args.size, 1)  # warm the page cache and imports
        rate(paths[:2 * cores], args.size, cores)  # and the pool's path
        single = rate(paths[: max(8, args.n // max(cores, 2))], args.size, 1)
        parallel = rate(paths, args.size, cores)
    ratio = parallel / (cores * single)
    print(f"prepare: {args.n} images 1024x1024 (PNG 8/16-bit, JPEG) -> {args.size}x{args.size}")
    print(f"  single core : {single:8.1f} img/s")
    print(f"  {cores:2d} processes: {parallel:8.1f} img/s")
    print(f"  ratio parallel / (cores x single) = {ratio:.2f}  (target >= 0.85)")


if __name__ == "__main__":
    main()
