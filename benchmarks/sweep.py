"""Benchmark: a sweep of four experiments on two Ray workers against the same four in a row.

In one run, on tiny params (the tests' TINY with one weighting scheme), four experiments (bias
strength 0.2 and 0.4 x training seeds 0 and 1):

- **in a row**: ``dvc exp run -S ...`` four times, one after another, in a fresh copy of the
  pipeline (what a sweep costs without any scheduling: DVC's queue adds to it): the first
  value's two seeds before the Ray sweep, the second value's after it, so that a machine whose
  speed drifts over the minutes of the run (this one's did: the same four took 72 s to 111 s in
  runs minutes apart) weighs on both sides of the ratio alike;
- **on Ray**: ``biaslab sweep --ray ADDRESS`` on a local cluster of two nodes started
  here, on loopback only (``biaslab.sweep.ray_cluster.local_cluster``), each with one CPU and
  one logical GPU, a bare Git repository and a local folder as the remotes; end to end, from
  the driver's start to the end of its process, clones, pushes, the experiments' fetches, the
  table and the figure included.

Prints both times and the speed-up, then the scheduling overhead: a no-op Ray task's round trip
(with the experiments' options: one GPU, workers reused), and per task, from the tasks' own
event log, the first dispatch on each worker (submission to start: starting the worker), the
hand-over from one task to the next on a worker, the setup before ``dvc exp run`` (look-up on
the Git remote, clone, checkout, DVC remote) and the pushes after it; and the driver's own time
before it submits the first task and after the last one ends. In a row, consecutive experiments
of one value reuse the workspace's outputs of the stages before training; on Ray the second
wave takes them from the DVC remote's run cache. The in-a-row half before the Ray sweep and the
half after it bracket it in time; a machine shared with other work still loads them unevenly.

    .venv/bin/python -m benchmarks.sweep [--keep DIR]
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from biaslab.sweep import ray_cluster as rs

ROOT = Path(__file__).resolve().parents[1]
REPO_FILES = ["dvc.yaml", "params.yaml", "stages", "biaslab", ".dvc/config", ".dvcignore",
              ".gitignore"]
PARAMS = {"prepare": {"size": 12}, "train": {"epochs": 2, "width": 4, "batch_size": 64},
          "weights": {"schemes": ["none"]}, "evaluate": {"n_boot": 50, "n_perm": 200}}
VALUES, SEEDS = ["0.2", "0.4"], ["0", "1"]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
       "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT), "GIT_AUTHOR_NAME": "bench",
       "GIT_AUTHOR_EMAIL": "bench@biaslab.invalid", "GIT_COMMITTER_NAME": "bench",
       "GIT_COMMITTER_EMAIL": "bench@biaslab.invalid"}


def sh(cwd: Path, *args: str) -> str:
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                         f"\n{proc.stderr[-2000:]}")
    return proc.stdout


def tiny_repo(path: Path) -> Path:
    """The pipeline in a fresh git repo with tiny params, committed."""
    return pipeline_repo(path, PARAMS, "tiny")


def pipeline_repo(path: Path, settings: dict, message: str) -> Path:
    """The pipeline (:data:`REPO_FILES`) in a fresh git repo at ``path``, params.yaml's
    sections updated with ``settings`` (section -> keys), committed."""
    for item in REPO_FILES:
        src, dst = ROOT / item, path / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    params = yaml.safe_load((path / "params.yaml").read_text())
    for section, values in settings.items():
        params[section].update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(path, "git", "init", "-q", "-b", "main")
    sh(path, "git", "add", "-A")
    sh(path, "git", "commit", "-qm", message)
    return path


def row_plan() -> list:
    """The four experiments in run order: value by value, seed by seed (what a sweep runs)."""
    from biaslab.sweep import table as sw

    return sw.plan(sw.BIAS_STRENGTH, VALUES, [int(s) for s in SEEDS], prefix="row")


def in_a_row(repo: Path, experiments: list) -> float:
    """Seconds for ``experiments``, one ``dvc exp run`` after another."""
    from biaslab.sweep import table as sw

    start = time.monotonic()
    for exp in experiments:
        sh(repo, "dvc", "exp", "run", "-q", "-n", exp.name,
           *[a for s in exp.settings for a in ("-S", s)], *sw.TARGETS)  # what a sweep runs
        print(f"  in a row: {exp.name} done at {time.monotonic() - start:.0f} s", flush=True)
    return time.monotonic() - start


def round_trips(address: str, n: int = 10) -> tuple[float, float]:
    """A no-op task with the experiments' options (one GPU): the first round trip, and the
    median of ``n`` more."""
    import ray

    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        noop = ray.remote(**rs.REMOTE)(lambda: None).options(
            **rs.task_options(rs.resources({}), "noop"))
        times = []
        for _ in range(n + 1):
            start = time.perf_counter()
            ray.get(noop.remote())
            times.append(time.perf_counter() - start)
    finally:
        ray.shutdown()
    return times[0], statistics.median(times[1:])


def on_ray(repo: Path, work: Path, address: str) -> tuple[float, list[dict], tuple[float, float]]:
    """Seconds for the Ray sweep, end to end, its tasks' events, and the driver's start and
    end (epoch seconds, as the events)."""
    sh(work, "git", "init", "-q", "--bare", "-b", "main", "remote.git")
    sh(repo, "git", "remote", "add", "origin", str(work / "remote.git"))
    sh(repo, "dvc", "remote", "add", "-q", "-d", "storage", str(work / "store"))
    sh(repo, "git", "commit", "-qam", "remotes")
    sh(repo, "git", "push", "-q", "origin", "HEAD")
    events = work / "events.jsonl"
    start, wall = time.monotonic(), time.time()
    out = sh(repo, sys.executable, "-m", "biaslab", "sweep", "--values", *VALUES,
             "--seeds", *SEEDS, "--ray", address, "--events", str(events))
    took = time.monotonic() - start
    print("  " + "\n  ".join(line for line in out.splitlines() if line.startswith("sweep:")))
    return (took, [json.loads(line) for line in events.read_text().splitlines()],
            (wall, wall + took))


def overhead(events: list[dict]) -> dict[str, list[float]]:
    """Seconds of each step of the tasks but ``dvc exp run`` itself (which is also given)."""
    by = {}
    for e in events:
        by.setdefault(e["name"], {})[e["event"]] = e
    tasks = sorted(by.values(), key=lambda t: t["start"]["time"])
    ends = {}  # the end of the last task of each worker: a worker runs task after task
    handover = []
    for t in tasks:
        if t["start"]["pid"] in ends:
            handover.append(t["start"]["time"] - ends[t["start"]["pid"]])
        ends[t["start"]["pid"]] = t["end"]["time"]
    return {
        "first dispatch (worker start)": [t["start"]["time"] - t["start"]["submitted"]
                                          for t in tasks[:2]],
        "hand-over on a worker": handover,
        "setup before dvc exp run": [t["dvc"]["time"] - t["start"]["time"] for t in tasks],
        "pushes after dvc exp run": [t["end"]["time"] - t["ran"]["time"] for t in tasks],
        "dvc exp run": [t["ran"]["time"] - t["dvc"]["time"] for t in tasks],
    }


@contextlib.contextmanager
def workspace(doc: str, prefix: str):
    """A benchmark's working folder (``--keep DIR``: that one, kept; else a temporary one,
    removed after), once the machine's cores and load are printed."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary "
                                       "folder, removed)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {os.cpu_count()} cores, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        yield work
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    # the cluster binds to loopback only, and Ray, imported after this, joins it there
    os.environ.update(rs.LOCAL_ENV)
    ENV.update(rs.LOCAL_ENV)
    cluster = None
    with workspace(__doc__, "bench-sweep-") as work:
        try:
            plan, repo = row_plan(), tiny_repo(work / "row")
            before = in_a_row(repo, plan[:len(SEEDS)])  # the first value's seeds before Ray ...
            cluster = rs.local_cluster(("0", "1"))  # GPU 0 on one node, GPU 1 on the other
            cold, warm = round_trips(cluster.address)
            ray_s, events, driver = on_ray(tiny_repo(work / "ray"), work, cluster.address)
            cluster.shutdown()
            cluster = None
            after = in_a_row(repo, plan[len(SEEDS):])  # ... the second value's after it
        finally:
            if cluster is not None:
                cluster.shutdown()

    row = before + after
    print(f"\nfour experiments in a row:          {row:6.1f} s ({before:.1f} s before the Ray "
          f"sweep, {after:.1f} s after it)")
    print(f"four experiments on 2 Ray workers:  {ray_s:6.1f} s (end to end)")
    print(f"speed-up:                           {row / ray_s:6.2f}x (target >= 1.6x)")
    print(f"load average after:                 "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("\nscheduling overhead")
    print(f"  no-op task round trip:            {cold:6.2f} s first, {warm * 1000:.1f} ms "
          "median of 10 more")
    parts = overhead(events)
    for name, values in parts.items():
        print(f"  {name + ':':34s}{statistics.mean(values):6.2f} s mean "
              f"({', '.join(f'{v:.1f}' for v in values)})")
    per_task = sum(statistics.mean(parts[k]) for k in (
        "hand-over on a worker", "setup before dvc exp run", "pushes after dvc exp run"))
    print(f"  per task, all but dvc exp run:    {per_task:6.2f} s (target < 2 s), plus the "
          "first dispatch on each worker")
    # the driver's own time, outside every task: Python, checks, connecting to Ray; and the
    # last experiment's fetch, the table and the figure
    first = min(e["submitted"] for e in events if e["event"] == "start")
    last = max(e["time"] for e in events if e["event"] in ("end", "failed", "skip"))
    print(f"  driver, before the first task:    {first - driver[0]:6.2f} s; after the last: "
          f"{driver[1] - last:.2f} s")


if __name__ == "__main__":
    main()
