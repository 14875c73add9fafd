"""One experiment of a sweep on a Ray cluster: the task that runs it on a worker.

The task (:func:`run_experiment`) clones the Git remote into a scratch folder of the worker's
machine, checks out the sweep's commit and runs ``dvc exp run --pull -n NAME -S ...``
(``--pull``: a stage that another experiment already ran with the same code, params and inputs
comes from the DVC remote's run cache instead of running again). It then pushes the outputs and
the run cache to the DVC remote (``dvc push --run-cache``), the experiment to the Git remote
(``dvc exp push``), and removes its folder. It runs nothing the Git remote has already (a
retried task, a second driver), pushes the ref last (a ref on the Git remote means the outputs
are on the DVC remote too), and locks its folder while in use (the next task on that machine
removes the folders of tasks that were killed).

The driver, :mod:`biaslab.sweep.ray_cluster`, sends this module to the workers by value
(cloudpickle), so the workers need the project's environment (Python, Ray, DVC, git) but not
this file; it imports nothing of biaslab. It reads the worker's environment (PATH,
CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# every experiment of a sweep is named so (biaslab.sweep.ray_cluster.experiment_name); its
# task's folder and lock file too: biaslab-sweep-...
NAME_PREFIX = "sweep-"
LOG_TAIL = 4000  # characters of a failed experiment's log sent back to the driver


@dataclass(frozen=True)
class Job:
    """What a task needs to run one experiment, all of it plain text.

    ``workdir``: the scratch folder on the worker ("": its temporary folder); ``events``: a
    file every worker can append to (a shared filesystem), one JSON line per step ("": none).
    """

    name: str
    settings: tuple[str, ...]
    commit: str
    git_url: str
    dvc_remote: tuple[str, str]  # name, URL
    workdir: str = ""
    events: str = ""
    submitted: float = 0.0
    targets: tuple[str, ...] = ()  # the stages `dvc exp run` runs (biaslab.sweep.table.TARGETS)


def exp_ref(commit: str, name: str) -> str:
    """The Git ref of experiment ``name`` of baseline ``commit``, as DVC writes it."""
    return f"refs/exps/{commit[:2]}/{commit[2:]}/{name}"


def run_experiment(job: Job) -> dict:
    """The Ray task: run one experiment in a fresh clone and push it; what happened.

    Returns a dict: ``name``, ``state`` (success | failed), ``skipped`` (the Git remote has it
    from another run), ``log`` (the end of a failed run's log), where it ran (``node``,
    ``host``, ``pid``, ``cuda``) and when (``start``, ``dvc_start``, ``dvc_end``, ``end``,
    epoch seconds). A failing git or DVC step other than the experiment itself raises.
    """
    # A worker of a raylet that reaps orphans (docs/sweep.md: the subreaper setting) ignores
    # SIGCHLD, and then every child's exit status reads 0: a failed experiment would pass for a
    # success
    ignored = _ignored(signal.SIGCHLD)
    if ignored:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        return _run_experiment(job)
    finally:
        if ignored:
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def _ignored(signum: int) -> bool:
    """Whether this process ignores ``signum`` (set in C, Python's getsignal does not see it)."""
    try:
        with open("/proc/self/status") as status:
            mask = next(line.split()[1] for line in status if line.startswith("SigIgn:"))
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) >> (signum - 1) & 1)


def _run_experiment(job: Job) -> dict:
    import ray  # on the worker

    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep
           + os.environ.get("PATH", ""), "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    where = {"node": ray.get_runtime_context().get_node_id(), "host": os.uname().nodename,
             "pid": os.getpid(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    result = {"name": job.name, "state": "success", "skipped": False, "log": "", **where,
              "start": time.time(), "submitted": job.submitted}
    _event(job, "start", submitted=job.submitted, **where)
    ref = exp_ref(job.commit, job.name)
    if _run(["git", "ls-remote", job.git_url, ref], env).stdout.strip():
        # an earlier attempt pushed it and then died, or another driver ran it
        _event(job, "skip")
        return {**result, "skipped": True, "end": time.time()}

    base = Path(job.workdir or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    _remove_stale(base)
    # the lock first, then the folder: a lock free of its task (killed) marks a stale folder
    fd, lock = tempfile.mkstemp(prefix=f"biaslab-{job.name}-", suffix=".lock", dir=base)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the kernel frees it when the task dies
    repo = lock.removesuffix(".lock")
    os.mkdir(repo)
    try:
        _clone(job, repo, env)
        result["dvc_start"] = time.time()
        _event(job, "dvc")
        log = Path(repo) / ".dvc" / "tmp" / "sweep-run.log"
        with open(log, "w") as out:
            proc = subprocess.run(
                ["dvc", "exp", "run", "--pull", "-n", job.name,
                 *[a for s in job.settings for a in ("-S", s)], *job.targets],
                cwd=repo, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT)
        result["dvc_end"] = time.time()
        if proc.returncode != 0:
            _event(job, "failed")
            return {**result, "state": "failed", "end": time.time(),
                    "log": log.read_text(errors="replace")[-LOG_TAIL:]}
        _event(job, "ran")
        rev = _push(job, repo, ref, env)
        _event(job, "end" if rev else "skip")
        return {**result, "rev": rev, "skipped": not rev, "end": time.time()}
    finally:
        shutil.rmtree(repo, ignore_errors=True)
        Path(lock).unlink(missing_ok=True)
        os.close(fd)


def _remove_stale(base: Path) -> None:
    """Remove the folders that killed tasks left in ``base``: those whose lock is free.

    A task that takes its lock while this holds it gets it once this has removed the lock
    file, and only then makes its folder: this never removes a folder in use.
    """
    for path in base.glob(f"biaslab-{NAME_PREFIX}*.lock"):
        try:
            fd = os.open(path, os.O_RDWR)  # never created here: one removed meanwhile is gone
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(str(path).removesuffix(".lock"), ignore_errors=True)
            path.unlink(missing_ok=True)
        except OSError:  # held by its running task
            pass
        finally:
            os.close(fd)


def _clone(job: Job, repo: str, env: dict) -> None:
    """The sweep's commit in ``repo``, with the driver's default DVC remote.

    The remote goes to the clone's local config whether or not the committed one has it: a
    local path in the committed config is relative to the driver's clone, not this one. DVC
    runs in this process (``dvc.repo.Repo``): a worker imports it once for all its tasks.
    """
    from dvc.repo import Repo

    _run(["git", "clone", "-q", "--no-checkout", job.git_url, repo], env)
    _run(["git", "checkout", "-q", "--detach", job.commit], env, cwd=repo)
    if _run(["git", "config", "user.email"], env, cwd=repo, check=False).returncode:
        _run(["git", "config", "user.name", "biaslab sweep"], env, cwd=repo)
        _run(["git", "config", "user.email", "sweep@biaslab.invalid"], env, cwd=repo)
    name, url = job.dvc_remote
    with Repo(repo) as dvc, dvc.config.edit("local") as conf:  # dvc remote add --local -d -f
        conf["remote"][name] = {"url": url}
        conf["core"]["remote"] = name
    (Path(repo) / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)


def _push(job: Job, repo: str, ref: str, env: dict) -> str | None:
    """Push the experiment's outputs and run cache, then its ref; the experiment's commit, or
    None when the Git remote has another run of it already (kept as it is).

    The outputs go first so that a ref on the Git remote has its outputs on the DVC remote:
    ``dvc exp push`` alone pushes the ref first.
    """
    from dvc.repo import Repo

    with Repo(repo) as dvc:  # opened after `dvc exp run`: it sees the experiment's outputs
        # the stages it ran and what they need: the commit's dvc.lock also lists the outputs
        # of stages after them (explain, report), which this clone never made. Targets by
        # path: DVC reads a bare stage name from the current folder, not the repository's
        targets = [f"{Path(repo) / 'dvc.yaml'}:{stage}" for stage in job.targets]
        dvc.push(targets=targets or None, with_deps=True, run_cache=True)
        pushed = dvc.experiments.push(job.git_url, [job.name])
    if job.name not in pushed.get("success", []) + pushed.get("up_to_date", []):
        return None  # diverged: another driver pushed its own run first
    return _run(["git", "rev-parse", ref], env, cwd=repo).stdout.strip()


def _run(args: list[str], env: dict, cwd: str | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {' / '.join(said)}")
    return proc


def _event(job: Job, event: str, **extra) -> None:
    if job.events:
        line = json.dumps({"name": job.name, "event": event, "time": time.time(),
                           "pid": os.getpid(), **extra})
        with open(job.events, "a") as out:  # one short write: lines of tasks do not mix
            out.write(line + "\n")
