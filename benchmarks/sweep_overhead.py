"""Benchmark: the local sweep (DVC's queue) against the same four experiments run alone in a row.

In one run, on the tiny params of :mod:`benchmarks.sweep` (bias strength 0.2 and 0.4 x training
seeds 0 and 1), each mode in a fresh copy of the pipeline:

- **in a row**: ``dvc exp run -S ... evaluate`` four times, one after another (what the
  experiments cost with no scheduling at all);
- **local sweep**: ``biaslab sweep --values 0.2 0.4 --seeds 0 1``, end to end, from the
  driver's start to the end of its process: queueing, DVC's worker, the experiments, reading
  them back, the table and the figure.

Prints both times and ``local queue overhead ratio X`` (the sweep's wall time over the sum in a
row; the goal is at most 1.15 on the 2-core machine), then where the sweep's time goes, in
parts that add up to it: from the driver's start to the first experiment's ``dvc exp
exec-run`` (Python, checks, queueing the first, DVC's worker start, its set-up of the
experiment's temporary Git clone), the ``exec-run`` processes themselves (against the same
experiments in a row: DVC's per-stage work in the temporary clone, and the load), the gaps
between them (collecting one, handing over, setting up the next) and the driver after the last
one (reading it, the table, the figure). The times come from the driver's output (each line
time-stamped as it comes), the worker's log (when it took and finished each experiment) and
each ``exec-run``'s process file, looked at every 0.2 s (when it started and ended). Also the
driver's CPU time (its process and the commands it waited for, not DVC's worker): what its
waiting costs the experiments. The two modes run one after the other, so on a shared machine
their loads may differ: the load average is printed before and after.

    .venv/bin/python -m benchmarks.sweep_overhead [--keep DIR]
"""

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from benchmarks.sweep import ENV, SEEDS, VALUES, sh, tiny_repo, workspace
from biaslab.sweep import table as sw

TARGET = 1.15
_TASK = re.compile(r"^\[(?P<when>[\d-]+ [\d:,]+): INFO/MainProcess\] Task "
                   r"dvc\.repo\.experiments\.queue\.tasks\.run_exp\[(?P<id>[^\]]+)\] "
                   r"(?P<what>received|succeeded|failed)")


def in_a_row(repo: Path) -> tuple[float, list[float]]:
    """Seconds for the four experiments one ``dvc exp run`` after another, and each one's."""
    start, each = time.monotonic(), []
    for exp in sw.plan(sw.BIAS_STRENGTH, VALUES, [int(s) for s in SEEDS], prefix="row"):
        began = time.monotonic()
        sh(repo, "dvc", "exp", "run", "-q", "-n", exp.name,
           *[a for s in exp.settings for a in ("-S", s)], *sw.TARGETS)
        each.append(time.monotonic() - began)
        print(f"  in a row: {exp.name} in {each[-1]:.1f} s", flush=True)
    return time.monotonic() - start, each


def local_sweep(repo: Path) -> tuple[float, float, list[tuple[float, str]], dict]:
    """Seconds for ``biaslab sweep`` end to end, its CPU seconds (the driver and the commands
    it ran, DVC's daemonised worker not included), its output lines with their epoch times,
    and when each ``exec-run`` process was first seen and seen ended (:func:`watch_runs`)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "biaslab", "sweep", "--values", *VALUES,
                             "--seeds", *SEEDS], cwd=repo, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    runs: dict[str, list[float]] = {}
    watcher = threading.Thread(target=watch_runs, args=(repo, proc, runs), daemon=True)
    watcher.start()
    lines = []
    for line in proc.stdout:
        lines.append((time.time(), line.rstrip()))
        if line.startswith("sweep:"):
            print(f"  {line.rstrip()}", flush=True)
    if proc.wait():
        raise SystemExit("biaslab sweep failed:\n" + "\n".join(t for _, t in lines[-30:]))
    took = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    watcher.join()
    return took, cpu, lines, runs


def watch_runs(repo: Path, proc: subprocess.Popen, runs: dict[str, list[float]]) -> None:
    """Every 0.2 s while the sweep runs: each ``exec-run``'s process file (DVC's worker writes
    it as the process starts, and again with its return code as it ends; both writes leave the
    same modification time, hence this look): name -> [first seen, seen ended]."""
    folder = repo / ".dvc" / "tmp" / "exps" / "run"
    while proc.poll() is None:
        for path in folder.glob("*/*.json"):
            seen = runs.setdefault(path.parent.name, [time.time(), 0.0])
            if not seen[1]:
                try:
                    ended = json.loads(path.read_text()).get("returncode") is not None
                except (OSError, ValueError):
                    continue
                seen[1] = time.time() if ended else 0.0
        time.sleep(0.2)


def worker_tasks(repo: Path) -> list[tuple[float, float]]:
    """Each run_exp task's (taken, finished) epoch times, from the worker's log."""
    tasks, taken = [], {}
    log = repo / ".dvc" / "tmp" / "exps" / "celery" / "dvc-exp-worker-1.out"
    for line in log.read_text(errors="replace").splitlines():
        m = _TASK.match(line)
        if m:
            when = datetime.strptime(m["when"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if m["what"] == "received":
                taken[m["id"]] = when
            elif m["id"] in taken:
                tasks.append((taken.pop(m["id"]), when))
    return sorted(tasks)


def mean(values: list[float]) -> str:
    return (f"{statistics.mean(values):6.1f} s mean ({', '.join(f'{v:.1f}' for v in values)})"
            if values else "     - (none)")


def report(row: float, each: list[float], took: float, cpu: float,
           lines: list[tuple[float, str]], tasks: list, runs: list, start: float) -> None:
    print(f"\nfour experiments alone, in a row:  {row:6.1f} s")
    print(f"the same four, local sweep:        {took:6.1f} s (end to end)")
    print(f"local queue overhead ratio {took / row:.2f} (goal <= {TARGET}): "
          f"{took - row:+.1f} s over the sum")
    if not runs:
        return
    end = start + took
    budget = {
        "start to the first exec-run": runs[0][0] - start,
        "exec-run, the experiments": sum(b - a for a, b in runs),
        "between exec-runs": sum(b[0] - a[1] for a, b in zip(runs, runs[1:], strict=False)),
        "after the last exec-run": end - runs[-1][1],
    }
    print("\nwhere the local sweep's time goes (adds up to its wall time)")
    for name, seconds in budget.items():
        print(f"  {name + ':':36s}{seconds:6.1f} s")
    # what the queue and the driver add whatever the experiments' own speed: the part of the
    # ratio that a load on the machine does not move much
    outside = took - budget["exec-run, the experiments"]
    print(f"  {'outside the exec-runs, in all:':36s}{outside:6.1f} s ({outside / row:.0%} of the "
          "sum in a row)")
    queued = [t for t, line in lines if line.startswith("sweep: queued ")]
    read = [t for t, line in lines if re.match(r"sweep: \d+/\d+ ", line)]
    details = {
        "driver start to the first queued": [queued[0] - start] if queued else [],
        "queueing the rest (worker running)": [queued[-1] - queued[0]] if queued else [],
        "worker: taken to exec-run start": [r[0] - t[0] for t, r in zip(tasks, runs,
                                                                         strict=False)],
        "exec-run": [b - a for a, b in runs],
        "the same experiments in a row": each,
        "worker: exec-run end to collected": [t[1] - r[1] for t, r in zip(tasks, runs,
                                                                           strict=False)],
        "worker: collected to the next taken": [b[0] - a[1] for a, b in
                                                zip(tasks, tasks[1:], strict=False)],
        "last exec-run end to the driver's read": [read[-1] - runs[-1][1]] if read else [],
        "driver: last read to its end": [end - read[-1]] if read else [],
    }
    print("details")
    for name, values in details.items():
        print(f"  {name + ':':36s}{mean(values)}")
    print(f"  {'exec-run against in a row:':36s}{budget['exec-run, the experiments'] - row:+6.1f} s"
          " in all (DVC's work in the temporary clone, and the load)")
    print(f"  {'driver CPU, waiting included:':36s}{cpu:6.1f} s over {took:.0f} s "
          f"({cpu / took:.0%} of one core)")


def main() -> None:
    with workspace(__doc__, "bench-sweep-overhead-") as work:
        row, each = in_a_row(tiny_repo(work / "row"))
        repo = tiny_repo(work / "queue")
        start = time.time()
        took, cpu, lines, seen = local_sweep(repo)
        runs = sorted(tuple(v) for v in seen.values() if v[1])
        report(row, each, took, cpu, lines, worker_tasks(repo), runs, start)
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        stop_worker(repo)


def stop_worker(repo: Path, timeout: float = 60.0) -> None:
    """Stop DVC's queue worker and wait for it to end: it lingers once the queue is empty, and
    would write its pid file into the folder after the benchmark removed it."""
    pid_file = repo / ".dvc" / "tmp" / "exps" / "celery" / "dvc-exp-worker-1.pid"
    pid = int(pid_file.read_text().strip() or 0) if pid_file.exists() else 0
    sh(repo, "dvc", "queue", "stop")
    end = time.monotonic() + timeout
    while pid and time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)


if __name__ == "__main__":
    main()
