"""`biaslab sweep` on this machine: DVC's queue, watched through its state files.

The experiments are queued with ``dvc exp run --queue`` and run one at a time by DVC's worker
(``dvc queue start -j 1``). While they run, the sweep looks at the queue every ``--poll``
seconds, and each look costs a few milliseconds: a ``git log -g`` of the queue's stash, the
worker's small JSON files under ``.dvc/tmp/exps`` and a ``git for-each-ref`` of the
experiments' refs (:mod:`biaslab.sweep.local_queue` says what they mean). No ``dvc exp show``:
polled, it took a whole core of a 2-core machine from the experiments. Each experiment is read
once, as it ends, from its Git commit (:mod:`biaslab.sweep.results`, as the Ray driver reads
its experiments); a failed one's reason from its log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from biaslab.sweep import local_queue as lq
from biaslab.sweep import results as rs
from biaslab.sweep import table as sw

# the environment's own dvc, and the stages' python, even when PATH does not lead to them
BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
       "DVC_NO_ANALYTICS": "1"}
# every command is given this long, then stopped: one error naming it
TIMEOUT = 120.0
# DVC's queue on disk (dvc.repo.experiments: EXEC_TMP_DIR, EXEC_PID_DIR, the celery worker's
# ManagedProcess), under the repository's .dvc/tmp
RUN_DIR = Path(".dvc/tmp/exps/run")
WORKER_INFO = Path(".dvc/tmp/exps/celery/dvc-exp-worker-1.json")
STASH = "refs/exps/celery/stash"


def command(*args: str, check: bool = True, timeout: float = TIMEOUT) -> str:
    """Run ``ARGS``; its stdout. A failure (with ``check``) or a hang is one error naming it."""
    try:
        proc = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ValueError(f"{' '.join(args)}: no answer in {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise ValueError(f"{' '.join(args)} failed ({proc.returncode}): {' / '.join(said)}")
    return proc.stdout


def dvc(*args: str, check: bool = True, timeout: float = TIMEOUT) -> str:
    return command("dvc", *args, check=check, timeout=timeout)


def start_worker() -> Callable[[], None]:
    """Start ``dvc queue start -j 1`` (about 3 s of DVC start-up before the worker is there);
    what it returns waits for it and raises if it failed. Its output goes to a file: the
    worker it leaves behind would hold a pipe open."""
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by the function returned)
    proc = subprocess.Popen(["dvc", "queue", "start", "-j", "1"], env=ENV, stdout=out,
                            stderr=subprocess.STDOUT, text=True)

    def started() -> None:
        with out:
            try:
                code = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise ValueError(f"dvc queue start: no answer in {TIMEOUT:.0f} s") from None
            if code != 0:
                out.seek(0)
                raise ValueError(f"dvc queue start failed ({code}): {out.read()[-500:]}")

    return started


def _json(path: Path) -> dict | None:
    """A small JSON file DVC writes; None when absent or caught mid-write."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(info: dict | None) -> bool:
    """Whether the process of a process file (pid, returncode) still runs."""
    if not info or info.get("returncode") is not None or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        pass
    return True


def snapshot(baseline: str, names: set[str] | None = None) -> tuple[lq.Snapshot, dict[str, Path]]:
    """The queue now (the experiments ``names``, all when None), and the log file of each task.

    Read in this order: the stash, the tasks, then the refs, so that a task seen through
    (``finished``) has its ref seen too (the worker writes the ref first).
    """
    queued = frozenset(lq.stash_names(command("git", "log", "-g", "--format=%gs", STASH, "--",
                                              check=False)))
    tasks, logs, busy = {}, {}, False
    for info_path in RUN_DIR.glob("*/*.run"):
        info = _json(info_path)
        proc = _json(info_path.with_suffix(".json"))
        alive = _alive(proc)
        busy |= alive
        if info is None:  # caught mid-write: its name unknown this time
            continue
        name = info.get("name")
        if names is None or name in names:
            status = info.get("status")
            status = (lq.TASK_STATUS[status] if isinstance(status, int)
                      and 0 <= status < len(lq.TASK_STATUS) else "running")
            tasks[name] = lq.Task(status, alive)
            logs[name] = info_path.with_suffix(".out")
    refs = lq.exp_refs(command("git", "for-each-ref", "--format=%(objectname) %(refname)",
                               lq.exp_ref_prefix(baseline)), baseline)
    return lq.Snapshot(queued, tasks, refs, _alive(_json(WORKER_INFO)), busy), logs


def queue(experiments: list[sw.Experiment], baseline: str) -> None:
    """Queue every experiment and start DVC's worker, which begins with the first while the
    others are queued; fails before queueing any if another one waits in the queue.

    The worker's start (``dvc queue start``) runs beside the queueing of the first experiment.
    The experiments are queued in this process, through DVC's Python API (what ``dvc exp run
    --queue -n NAME -S ... evaluate`` calls): one DVC start-up for the sweep rather than one
    per experiment, about 3 s each on the 2-core machine.
    """
    waiting = lq.waiting(snapshot(baseline)[0])
    if waiting:
        raise ValueError(f"the DVC queue already holds {len(waiting)} experiment(s) "
                         f"({', '.join(map(str, waiting[:5]))}); let them end (dvc queue "
                         "status) or remove them (dvc queue remove --queued) first")
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    started = start_worker()
    try:
        with Repo(".") as repo:
            for i, exp in enumerate(experiments, 1):
                try:
                    repo.experiments.run(targets=list(sw.TARGETS), params=list(exp.settings),
                                         queue=True, name=exp.name)
                except DvcException as exc:
                    raise ValueError(f"dvc exp run --queue -n {exp.name} "
                                     f"{' '.join(f'-S {s}' for s in exp.settings)}: {exc}"
                                     ) from None
                print(f"sweep: queued {i}/{len(experiments)} {exp.name}: "
                      f"{' '.join(exp.settings)}", flush=True)
    finally:
        started()


def wait(experiments: list[sw.Experiment], baseline: str, *, poll: float, headline: str,
         grid: str, watch: lq.Watch | None = None) -> dict[str, rs.Result]:
    """Each experiment's result, read as it ends; looks at the queue every ``poll`` seconds."""
    names, settings = [e.name for e in experiments], {e.name: e.settings for e in experiments}
    watch = watch or lq.Watch(names, grace=max(5.0, 2 * poll))
    results: dict[str, rs.Result] = {}
    running_since: dict[str, float] = {}
    while True:
        snap, logs = snapshot(baseline, set(names))
        now = time.monotonic()
        ended, restart = watch.look(snap, now)
        for name in names:
            if watch.seen.get(name) == lq.RUNNING:
                running_since.setdefault(name, now)
        for end in ended:
            results[end.name] = result(end, logs.get(end.name), headline=headline, grid=grid)
            took = (f" after {now - running_since[end.name]:.0f} s"
                    if end.name in running_since else "")
            print(f"sweep: {len(results)}/{len(names)} {end.name} "
                  f"{results[end.name].outcome.state}{took}: {' '.join(settings[end.name])}",
                  flush=True)
        if len(results) == len(names):
            return results
        if restart:
            print("sweep: DVC's queue worker is not running; starting it again", flush=True)
            start_worker()()
        time.sleep(poll)


def result(end: lq.Ended, log: Path | None, *, headline: str, grid: str) -> rs.Result:
    """An experiment's result: a success read from its commit, a failure's reason from its
    log (``dvc queue logs NAME`` prints the same file)."""
    if end.state == lq.SUCCESS:
        return rs.from_commit(end.rev, lambda path: command("git", "show", f"{end.rev}:{path}"),
                              headline_file=headline, grid_file=grid)
    if end.state == lq.MISSING:
        return rs.Result(sw.Outcome(lq.MISSING))
    text = ""
    if log is not None:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            text = dvc("queue", "logs", end.name, check=False)
    if end.reason != lq.FROM_LOG:  # the log may say why the worker stopped, or nothing
        said = sw.error_line(text)
        return rs.failed(error=end.reason + (f" ({said})" if said else ""))
    return rs.failed(log=text, error=f"failed (dvc queue logs {end.name})")


def stop(experiments: list[sw.Experiment], baseline: str, why: str) -> None:
    """Stop this sweep's running experiments and take its queued ones off the queue."""
    names = [e.name for e in experiments]
    try:
        snap = snapshot(baseline, set(names))[0]
        states = {n: lq.state(n, snap) for n in names}
    except ValueError:  # git itself fails: take every name off the queue
        states = {name: lq.QUEUED for name in names}
    queued = [n for n, s in states.items() if s == lq.QUEUED]
    running = [n for n, s in states.items() if s == lq.RUNNING]
    if queued:
        dvc("queue", "remove", *queued, check=False)
    if running:
        dvc("queue", "kill", "--force", *running, check=False)
    if queued or running or why == "interrupted":
        print(f"sweep: {why}; {len(queued)} queued experiment(s) removed, {len(running)} "
              "stopped; the finished ones stay in dvc exp show", file=sys.stderr)


def run_local(experiments: list[sw.Experiment], args,
              meanwhile: Callable[[], object] = lambda: None) -> dict[str, rs.Result]:
    """Queue the sweep, start the worker and wait: each experiment's result, by name.
    ``meanwhile`` is called once the first experiment runs."""
    baseline = command("git", "rev-parse", "HEAD").strip()
    try:
        queue(experiments, baseline)
        meanwhile()
        return wait(experiments, baseline, poll=args.poll, headline=args.headline,
                    grid=args.grid)
    except KeyboardInterrupt:
        stop(experiments, baseline, "interrupted")
        sys.exit(130)
    except ValueError:
        stop(experiments, baseline, "stopped")
        raise
