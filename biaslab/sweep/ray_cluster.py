"""`make sweep RAY=auto|ADDRESS`: the experiments of a sweep as Ray tasks on a cluster; the
driver's side.

One Ray task per experiment (:func:`biaslab.sweep.ray_task.run_experiment`), asking for
``sweep.gpus_per_experiment`` GPUs and ``sweep.cpus_per_experiment`` CPUs, so that Ray places
it on a machine with a free GPU and sets its CUDA_VISIBLE_DEVICES. The task runs the
experiment in a fresh clone and pushes it to the Git and DVC remotes
(:mod:`biaslab.sweep.ray_task`). The driver (biaslab/cli/sweep.py) fetches each experiment's Git
ref as soon as its task ends (what ``dvc exp pull --no-cache`` fetches) and writes the same
metrics/sweep.csv and figure as a local sweep.

Nothing lost, nothing done twice:

- an experiment's name is a hash of its validated params (``sweep-<12 hex>``), and its Git ref
  holds the baseline commit (``refs/exps/<commit>/NAME``): the same params at the same commit
  always give the same ref;
- the ref is pushed last, so a ref on the Git remote means the outputs are on the DVC remote
  too; the driver submits no task for an experiment the remote has, and a task looks again
  before running (a retried task, a second driver);
- Ray retries a task whose worker or machine dies (``sweep.max_retries``); a failed experiment
  is reported with the error line of its log, and the others go on;
- a driver that is stopped takes its running tasks down with it (Ray ends the tasks of a
  driver that leaves); started again, it runs only what the Git remote does not have yet;
- a task's folder is locked while in use: the next task on that machine removes the folders of
  tasks that were killed.

The task's module reaches the workers by value (cloudpickle): the workers need the project's
environment (Python, Ray, DVC, git) but not its files. Experiments are submitted seed by seed,
so that the second seed of a value finds the stages before training in the run cache.

:func:`local_cluster` starts the tests' and the benchmark's cluster on this machine, bound to
127.0.0.1 only (a Ray head runs any code it is sent; that one has no token).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from biaslab.sweep import ray_task
from biaslab.sweep.ray_task import NAME_PREFIX, Job, exp_ref


def experiment_name(params: Mapping, settings: Sequence[str]) -> str:
    """``sweep-<12 hex>``: a hash of the validated params the settings give (``sweep`` left out).

    Two spellings of one value (``0.1``, ``0.10``) give one name; the code is not in it, as
    DVC's Git ref of the experiment holds the baseline commit.
    """
    from biaslab.config import parse_params
    from biaslab.sweep import table as sw

    full = parse_params(sw.applied(params, settings)).model_dump(mode="json")
    full.pop("sweep", None)
    digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()
    return NAME_PREFIX + digest[:12]


def named(experiments: Sequence, params: Mapping) -> list:
    """The experiments under their content names; two with the same params are an error."""
    out, seen = [], {}
    for exp in experiments:
        name = experiment_name(params, exp.settings)
        if name in seen:
            raise ValueError(f"VALUES: {' '.join(seen[name])} and {' '.join(exp.settings)} "
                             "give the same params; give each value once")
        seen[name] = exp.settings
        out.append(replace(exp, name=name))
    return out


def resources(params: Mapping) -> dict:
    """``sweep.*`` of params.yaml (how each experiment is scheduled, not what it computes: left
    out of the experiment's name), validated by its config section; absent keys, its defaults."""
    from biaslab.config import as_dict, parse_params

    return as_dict(parse_params(params).sweep)


def git_remote_url(remote: str, git: Callable[..., str]) -> str:
    """The URL of Git remote ``remote``; a local path made absolute (workers clone it)."""
    try:
        url = git("git", "remote", "get-url", remote).strip()
    except ValueError:
        raise ValueError(f"no Git remote {remote!r}: add one every machine can reach, e.g. "
                         f"git remote add {remote} ssh://host/srv/biaslab.git (a bare "
                         "repository), and push this commit to it") from None
    if "://" not in url and not (":" in url and "/" not in url.split(":")[0]):
        # a path (not scp-like host:path), which git reads from the repository's root
        top = git("git", "rev-parse", "--show-toplevel").strip()
        url = str((Path(top) / url).resolve())
    return url


def check_commit(remote: str, keep: Sequence[str], git: Callable[..., str]) -> str:
    """HEAD, once it is clean and on the Git remote: the tasks run what the remote has."""
    commit = git("git", "rev-parse", "HEAD").strip()
    changed = [line[3:] for line in git("git", "status", "--porcelain",
                                        "--untracked-files=no").splitlines()
               if line[3:] not in keep]
    if changed:
        raise ValueError(f"uncommitted changes ({', '.join(changed[:5])}): the tasks run commit "
                         f"{commit[:8]} from the Git remote; commit and push them first")
    git("git", "fetch", "-q", remote)
    if not git("git", "branch", "-r", "--contains", commit, "--list", f"{remote}/*").strip():
        raise ValueError(f"commit {commit[:8]} is not on the Git remote {remote!r}: the tasks "
                         f"clone it from there; push it first (git push {remote} HEAD)")
    return commit


def dvc_remote(config: Mapping) -> tuple[str, str]:
    """The default DVC remote of DVC's ``config`` (all levels merged, as ``dvc.config.Config``
    loads it, a local path made absolute): its name and URL."""
    name = config.get("core", {}).get("remote")
    if not name:
        raise ValueError("no default DVC remote: the tasks push their outputs to it and the "
                         "driver pulls from it; add one every machine can reach, e.g. "
                         "dvc remote add -d storage s3://bucket/biaslab (or a shared path)")
    url = config.get("remote", {}).get(name, {}).get("url")
    if not url:
        raise ValueError(f"the default DVC remote {name!r} (core.remote) is not a remote of "
                         f"DVC's config (dvc remote list); add it: dvc remote add {name} URL")
    return name, url


def pushed(git_url: str, commit: str, git: Callable[..., str]) -> set[str]:
    """Names of the experiments of ``commit`` that the Git remote has."""
    pattern = exp_ref(commit, "*")
    return {line.rsplit("/", 1)[1] for line in git("git", "ls-remote", git_url,
                                                      pattern).splitlines() if line.strip()}


def connect(address: str, need_gpus: float):
    """``ray.init`` on the cluster at ``address``; refuses one no machine of which can run an
    experiment (Ray would wait for ever)."""
    host, _, port = address.rpartition(":")
    if host and port.isdigit():  # ray.init waits minutes on an address where nothing listens
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as exc:
            raise ValueError(f"RAY={address}: no Ray cluster there ({exc}); start one: ray "
                             "start --head (docs/sweep.md, Scaling out)") from None
    import ray

    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
    except ConnectionError as exc:
        if host and port.isdigit() and os.environ.get("RAY_AUTH_MODE") != "token":
            # something listens there (checked above): most often a head that asks for a token
            # (Ray's token authentication, on by default for `ray start --head` from Ray 2.59),
            # which a driver given an address sends only with RAY_AUTH_MODE=token
            raise ValueError(
                f"RAY={address}: a Ray cluster listens there but this driver could not join it "
                f"({exc}); if it asks for a token: export RAY_AUTH_MODE=token, with its token "
                "in ~/.ray/auth_token or RAY_AUTH_TOKEN (on the head: ray get-auth-token), or "
                "use RAY=auto on the head machine (docs/sweep.md, Scaling out)") from None
        raise ValueError(f"RAY={address}: no Ray cluster there ({exc}); start one: "
                         "ray start --head (docs/sweep.md, Scaling out)") from None
    for signum, handler in handlers.items():  # Ray's own handler of SIGTERM exits at once;
        if handler is not None:                # the sweep's stops the tasks and says so
            signal.signal(signum, handler)
    gpus = [node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"]]
    if need_gpus and max(gpus, default=0) < need_gpus:
        ray.shutdown()
        raise ValueError(f"sweep.gpus_per_experiment = {need_gpus:g}, but the largest machine "
                         f"of the cluster at {address} has {max(gpus, default=0):g} GPU(s) "
                         f"({len(gpus)} machine(s)); set it to 0 for CPU machines")
    return ray


# ray.remote's options of the task. max_calls=0: a worker runs task after task. Ray's default
# for a task that asks for a GPU is a fresh worker each time (about a second here), to free the
# GPU's memory; this task never touches a GPU itself (its stages do, in processes of their own)
REMOTE = {"max_calls": 0}


def task_options(res: Mapping, name: str = "") -> dict:
    """Ray's options of an experiment's task, from the ``sweep`` section's values ``res``."""
    return {"name": f"sweep:{name}", "num_gpus": res["gpus_per_experiment"],
            "num_cpus": res["cpus_per_experiment"], "max_retries": res["max_retries"]}


def run(experiments: Sequence, jobs: Mapping[str, Job], *, address: str, res: Mapping,
        done: set[str], say: Callable[[str], None] = print,
        on_results: Callable[[list[dict]], None] = lambda results: None) -> dict[str, dict]:
    """Run on Ray the experiments whose names ``done`` lacks; each one's result, by name.

    A task that raised, or whose worker died ``max_retries + 1`` times, is a failed result
    whose ``error`` says why. ``on_results`` is given the results of ``done`` once the tasks are
    submitted, then each task's result as it comes, while the others still run: the driver
    fetches each experiment then, not all of them after the last. Ctrl-C cancels the running
    tasks (their pushed experiments stay).
    """
    ray = connect(address, res["gpus_per_experiment"])
    results = {name: {"name": name, "state": "success", "skipped": True} for name in done}
    pending = []
    try:
        ray.cloudpickle.register_pickle_by_value(ray_task)
        task = ray.remote(**REMOTE)(ray_task.run_experiment)
        refs = {}
        # seed by seed: the experiments of one value share the stages before training, which
        # a later wave then takes from the run cache instead of running them side by side
        for exp in sorted(experiments, key=lambda e: e.seed):
            if exp.name in done:
                continue
            job = replace(jobs[exp.name], submitted=time.time())
            refs[task.options(**task_options(res, exp.name)).remote(job)] = exp
        say(f"sweep: {len(done)} experiment(s) on the Git remote already; {len(refs)} "
            f"submitted to the Ray cluster at {address}")
        pending = list(refs)
        on_results(list(results.values()))
        while pending:
            # a timeout lets Ctrl-C in: Python handles signals between calls only
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            if not ready:
                continue
            exp = refs[ready[0]]
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # raised in the task, or its worker died
                result = {"name": exp.name, "state": "failed", "error": _why(exc)}
            results[exp.name] = result
            say(_progress(len(results) - len(done), len(refs), exp, result))
            on_results([result])
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        ray.shutdown()
    return results


def _why(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "Error:" in line or "failed (" in line]
    return (errors or lines or [type(exc).__name__])[-1]


def _progress(i: int, n: int, exp, result: dict) -> str:
    took = (f" after {result['end'] - result['start']:.0f} s" if "end" in result and
            "start" in result else "")
    where = (f" on {result['host']} (CUDA_VISIBLE_DEVICES={result['cuda'] or 'none'})"
             if "host" in result else "")
    state = "found on the Git remote" if result.get("skipped") else result["state"]
    return f"sweep: {i}/{n} {exp.name} {state}{took}{where}: {' '.join(exp.settings)}"


# ------------------------------------------------------------ a cluster on this machine

# The local clusters of the tests, the benchmark and docs/sweep.md's walk-through must be out of
# reach of other machines: a Ray head runs any code it is sent. Ray binds a node's servers to
# loopback only when the node's IP address is 127.0.0.1 (any other, 127.0.0.2 too, binds them to
# every interface); and on Linux it rewrites a loopback address given to ray.init or `ray start`
# (--address, --node-ip-address) to the machine's network address, unless
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 puts it in its one-machine mode (macOS's and Windows'
# default), which then refuses `ray start --address` (a second node): ray/_private/services.py,
# resolve_ip_for_localhost and get_node_ip_address
LOOPBACK = "127.0.0.1"
LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # a driver's, to join such a cluster
SUBREAPER = "RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper"


def local_cluster(gpus: Sequence[str] = ("0", "1")):
    """A Ray cluster of one node per item of ``gpus`` on this machine, bound to 127.0.0.1 only.

    Each node has one CPU and one logical GPU, the device its item names (its
    CUDA_VISIBLE_DEVICES: the devices the tasks see tell the nodes apart); the raylets kill what
    a dead worker leaves running; no dashboard. A driver joins it at ``cluster.address``
    (``127.0.0.1:PORT``) with :data:`LOCAL_ENV` in its environment (set before Ray is imported).
    The caller shuts it down (``cluster.shutdown()``).
    """
    from ray.cluster_utils import Cluster

    saved = {key: os.environ.get(key) for key in ("CUDA_VISIBLE_DEVICES", SUBREAPER)}
    os.environ[SUBREAPER] = "true"  # read by each raylet as it starts
    cluster = Cluster(shutdown_at_exit=False)
    try:
        for gpu in gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # read by the node as it starts
            cluster.add_node(num_cpus=1, num_gpus=1, node_ip_address=LOOPBACK,
                             include_dashboard=False)
    except BaseException:
        cluster.shutdown()
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return cluster
