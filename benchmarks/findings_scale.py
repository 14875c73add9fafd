"""Benchmark: the pipeline up to predict with all 14 NIH findings on the full NIH table.

The real table (112,120 images, 30,805 patients) with stand-in pixels, as a test fixture would
make them (``/work/notes/nih_standin.py ROOT 32`` or any generator writing
``ROOT/images_001/images/<Image Index>`` beside ``ROOT/Data_Entry_2017*.csv[.gz]``), in a fresh
copy of the pipeline with ``data.findings: all`` at 32x32, one scheme, one seed, ``--epochs``
epochs. Each stage runs alone (``dvc repro -s``); the script prints its wall time and the peak
resident memory of its largest process (``os.wait4``'s ``ru_maxrss``), then the predictions'
shape. Run it on an otherwise idle machine (the figures of a busy one are upper bounds):

    .venv/bin/python -m benchmarks.findings_scale --root /tmp/nih-standin [--epochs 1]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.sweep import pipeline_repo

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["params", "prepare", "bias", "split", "audit", "weights@none", "train@none-0",
          "predict@none-0"]


def repo(path: Path, root: Path, epochs: int) -> Path:
    """The pipeline in a fresh git repo, set for the 14 findings of the NIH layout at ``root``."""
    return pipeline_repo(path, {
        "data": {"source": "nih", "root": str(root), "findings": "all"},
        "prepare": {"size": 32},
        "split": {"train_size": 0, "stratify": ["label", "sex"]},
        "weights": {"schemes": ["none"]},
        "train": {"epochs": epochs, "seeds": [0], "batch_size": 128, "pos_weight": "balanced"},
    }, "nih 14")


def _env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
            "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}


def stage(path: Path, name: str) -> tuple[float, float, str]:
    """Seconds, peak resident GiB of the largest process, and the stage's last line."""
    start = time.monotonic()
    proc = subprocess.Popen(["dvc", "repro", "-s", name], cwd=path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed:\n{out[-3000:]}")
    last = [line for line in out.splitlines() if line.startswith(name.split("@")[0])]
    return seconds, usage.ru_maxrss / 2**20, (last[-1] if last else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path,
                        help="the NIH layout with stand-in (or real) images")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep", help="work in this folder and keep it")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-findings-"))
    try:
        print(f"machine: {os.cpu_count()} cores, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        path = repo(work / "repo", args.root.resolve(), args.epochs)
        for name in STAGES:
            seconds, gib, line = stage(path, name)
            print(f"{name:16s} {seconds:8.1f} s  {gib:6.2f} GiB  {line}", flush=True)
        pred = pd.read_parquet(path / "data/predictions/none/seed0.parquet")
        print(f"predictions: {len(pred)} rows = {pred['row'].nunique()} images x "
              f"{pred['finding'].nunique()} findings; columns {pred.columns.tolist()}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
