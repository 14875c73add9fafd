"""The headline figures against a param: one DVC experiment per value x training seed.

Queues one experiment per (value, training seed) with `dvc exp run --queue`, runs them one at a
time with `dvc queue start`, waits for them, then writes metrics/sweep.csv (one row per
experiment x scheme x method: the figures and gaps with their intervals) and reports/sweep.png.
Any params.yaml key can be swept (--param), or the bias strength k (p0 = 0.5 - k,
p1 = 0.5 + k); --set holds settings of every experiment. Run it from the repository's root.

The experiments stay in `dvc exp show`, named PREFIX-v<i>-s<seed> (PREFIX = sweep-DATE-TIME);
only those of this run are collected, so an older sweep's never appear in the table. Ctrl-C
stops this sweep's experiments and takes them off the queue.

With --ray ADDRESS (auto: the cluster this machine belongs to) the experiments run as Ray tasks
on a cluster instead, each in its own clone of the Git remote (--git-remote), and come back
through the Git and DVC remotes, each as soon as its task ends; the table and figure are the
same. Experiments that the Git remote already has are not run again.
"""
# How: each experiment's grid.csv is read in the experiment's own commit (git show), since
# `dvc exp show` has the headline metrics only; biaslab.sweep.table has the rest, and
# biaslab.sweep.ray_cluster the Ray tasks.

from __future__ import annotations

import argparse
import contextlib
import gc
import io as text_io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from biaslab import artifacts
from biaslab.config import ConfigError, load_params, parse_params
from biaslab.sweep import ray_cluster, ray_task
from biaslab.sweep import table as sw
from biaslab.sweep.figure import sweep_figure

# the environment's own dvc, and the stages' python, even when PATH does not lead to them
BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
       "DVC_NO_ANALYTICS": "1"}
PENDING = ("queued", "running")
# `dvc exp show` hangs now and then (pygit2 1.21's BlobIO loses a wake-up when the machine is
# busy): every command is given this long, then stopped and, when polling, asked again
TIMEOUT = 120.0
EXAMPLES = """\
  biaslab sweep                                  # bias strength k = 0 0.1 ... 0.5, seeds 0 1
  biaslab sweep --values 0 0.2 0.4 --seeds 0 1 2 --set train.epochs=5
  biaslab sweep --param split.train_size --values 60 120 216 --seeds 0
  biaslab sweep --ray auto --values 0 0.2 0.4    # on the Ray cluster of this machine
  biaslab sweep --ray 10.0.0.5:6379 --git-remote lab   # on that cluster's head, through `lab`
  make sweep SWEEP=split.train_size VALUES="60 120 216" SEEDS="0 1 2" SWEEP_SET="train.epochs=5"
"""


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


def start_worker() -> None:
    """``dvc queue start``: the worker it leaves behind would hold a pipe open, so its output
    goes to a file."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(["dvc", "queue", "start", "-j", "1"], env=ENV, stdout=out,
                              stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
        if proc.returncode != 0:
            out.seek(0)
            raise ValueError(f"dvc queue start failed ({proc.returncode}): {out.read()[-500:]}")


def exp_show() -> list[dict]:
    return json.loads(dvc("exp", "show", "--json", timeout=TIMEOUT / 2))


def queue(experiments: list[sw.Experiment]) -> None:
    """Queue every experiment; fails before queueing any if another one waits in the queue."""
    waiting = [e["name"] for b in exp_show() for e in (b.get("experiments") or [])
               if (e.get("executor") or {}).get("state") in PENDING]
    if waiting:
        raise ValueError(f"the DVC queue already holds {len(waiting)} experiment(s) "
                         f"({', '.join(map(str, waiting[:5]))}); let them end (dvc queue "
                         "status) or remove them (dvc queue remove --queued) first")
    for i, exp in enumerate(experiments, 1):
        dvc("exp", "run", "--queue", "-q", "-n", exp.name, *[a for s in exp.settings
                                                              for a in ("-S", s)],
            *sw.TARGETS)
        print(f"sweep: queued {i}/{len(experiments)} {exp.name}: {' '.join(exp.settings)}",
              flush=True)


def wait(experiments: list[sw.Experiment], poll: float,
         headline: str) -> dict[str, sw.Outcome]:
    """Poll ``dvc exp show`` until no experiment of the sweep is queued or running."""
    names, settings = [e.name for e in experiments], {e.name: e.settings for e in experiments}
    seen: dict[str, str] = {}
    running_since: dict[str, float] = {}
    stalled, done, misread = 0, 0, 0
    while True:
        try:
            states = sw.outcomes(exp_show(), names, headline_file=headline)
            misread = 0
        except ValueError:  # fails now and then while the worker swaps folders, or hangs
            misread += 1
            if misread == 5:
                raise
            time.sleep(poll)
            continue
        for name, outcome in states.items():
            if outcome.state == "running":
                running_since.setdefault(name, time.monotonic())
            elif outcome.state not in PENDING and seen.get(name) != outcome.state:
                done += 1
                took = (f" after {time.monotonic() - running_since[name]:.0f} s"
                        if name in running_since else "")
                print(f"sweep: {done}/{len(names)} {name} {outcome.state}{took}: "
                      f"{' '.join(settings[name])}", flush=True)
            seen[name] = outcome.state
        pending = [o.state for o in states.values() if o.state in PENDING]
        if not pending:
            return states
        # the worker ends when the queue is empty; one that died leaves ours queued for ever
        stalled = stalled + 1 if "running" not in pending else 0
        if stalled == 3:
            print("sweep: no experiment running; starting the queue worker again", flush=True)
            start_worker()
        elif stalled == 12:
            raise ValueError("the DVC queue worker runs none of the queued experiments "
                             "(dvc queue status)")
        time.sleep(poll)


def collect(outcomes: dict[str, sw.Outcome], grid_path: str):
    """Each successful experiment's grid.csv; why each failed one failed (its queue log).

    grid.csv is a git-tracked output (cache: false), so the experiment's commit holds it: read
    with ``git show REV:PATH`` (dvc.api.read reads through pygit2, see TIMEOUT).
    """
    grids, errors = {}, {}
    for name, outcome in outcomes.items():
        if outcome.state == sw.SUCCESS:
            try:
                grids[name] = read_grid(outcome.rev, grid_path)
            except ValueError as exc:  # pandas' parser errors are ValueErrors
                errors[name] = f"unreadable in the experiment's commit: {exc}"
        elif outcome.state == sw.FAILED:
            errors[name] = sw.failure_reason(dvc("queue", "logs", name, check=False))
    return grids, errors


def read_grid(rev: str, path: str) -> pd.DataFrame:
    return pd.read_csv(text_io.StringIO(command("git", "show", f"{rev}:{path}")))


def stop(experiments: list[sw.Experiment], why: str) -> None:
    """Stop this sweep's running experiments and take its queued ones off the queue."""
    names = [e.name for e in experiments]
    try:
        states = sw.outcomes(exp_show(), names)
    except ValueError:  # DVC itself fails: take every name off the queue
        states = {name: sw.Outcome("queued") for name in names}
    running = [n for n, o in states.items() if o.state == "running"]
    queued = [n for n, o in states.items() if o.state == "queued"]
    if queued:
        dvc("queue", "remove", *queued, check=False)
    if running:
        dvc("queue", "kill", "--force", *running, check=False)
    if queued or running or why == "interrupted":
        print(f"sweep: {why}; {len(queued)} queued experiment(s) removed, {len(running)} "
              "stopped; the finished ones stay in dvc exp show", file=sys.stderr)


def on_ray(experiments: list[sw.Experiment], params: dict, args) -> tuple[dict, dict, dict]:
    """Run the sweep on the Ray cluster ``args.ray``: outcomes, grids and errors by name.

    The checks come first (a Git remote holding this clean commit, a default DVC remote);
    experiments the Git remote has already are not run again (biaslab/sweep/ray_cluster.py). Each
    experiment is brought back as soon as its task ends (:func:`bring_back`), while the others
    still run: what is left after the last one is the table and the figure.
    """
    res = ray_cluster.resources(params)
    url = ray_cluster.git_remote_url(args.git_remote, command)
    commit = ray_cluster.check_commit(args.git_remote, [args.out, args.figure], command)
    remote = ray_cluster.dvc_remote(dvc_config())
    names = [e.name for e in experiments]
    done = ray_cluster.pushed(url, commit, command) & set(names)
    events = args.events and str(Path(args.events).resolve())
    jobs = {e.name: ray_task.Job(e.name, e.settings, commit, url, remote,
                                  workdir=res["workdir"], events=events, targets=sw.TARGETS)
            for e in experiments}
    back: tuple[dict, dict, dict] = ({}, {}, {})
    ray_cluster.run(experiments, jobs, address=args.ray, res=res, done=done,
                  say=lambda line: print(line, flush=True),
                  on_results=lambda results: bring_back(results, commit, args, *back))
    return back


def dvc_config() -> dict:
    """DVC's config of this repository, its levels merged, read in this process (``dvc
    config`` would start DVC once per key, most of a second each)."""
    from dvc.config import Config
    from dvc.exceptions import DvcException

    try:
        return Config.from_cwd()
    except DvcException as exc:
        raise ValueError(f"DVC's config (.dvc/config): {exc}") from None


def bring_back(results: list[dict], commit: str, args, outcomes: dict, grids: dict,
               errors: dict) -> None:
    """The outcome, grid and error of each result of Ray tasks (biaslab/sweep/ray_cluster.py), into
    ``outcomes``, ``grids`` and ``errors``.

    A success's Git ref is fetched from the Git remote, as ``dvc exp pull -f --no-cache``
    fetches it (its commit: the experiment is then in ``dvc exp show``; its models stay on the
    DVC remote), and its headline and grid.csv are read from that commit, with no ``dvc exp
    show``: as in a local sweep, a success whose headline or grid cannot be read is failed.
    """
    refs = {}
    for result in results:
        name = result["name"]
        if result["state"] == sw.SUCCESS:
            refs[name] = ray_task.exp_ref(commit, name)
        else:
            outcomes[name] = sw.Outcome(sw.FAILED)
            errors[name] = (sw.failure_reason(result["log"]) if result.get("log")
                            else result.get("error", "failed"))
    try:
        if refs:
            command("git", "fetch", "-q", args.git_remote, *[f"+{r}:{r}" for r in refs.values()])
    except ValueError as exc:
        for name in refs:  # on the Git remote still: the next run fetches them
            outcomes[name], errors[name] = sw.Outcome(sw.FAILED), f"not fetched: {exc}"
        return
    for name, ref in refs.items():
        rev = None
        try:
            rev = command("git", "rev-parse", ref).strip()
            headline = json.loads(command("git", "show", f"{rev}:{args.headline}"))
            if not isinstance(headline, dict) or not headline:
                raise ValueError(f"{args.headline}: no headline figures")
            grids[name] = read_grid(rev, args.grid)
        except ValueError as exc:  # json's and pandas' parser errors are ValueErrors
            outcomes[name] = sw.Outcome(sw.FAILED, rev)
            errors[name] = f"unreadable in the experiment's commit: {exc}"
        else:
            outcomes[name] = sw.Outcome(sw.SUCCESS, rev, headline)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--param", default=sw.DEFAULT_PARAM,
                        help=f"params.yaml key, or {sw.BIAS_STRENGTH} (k: p0 = 0.5 - k, "
                             "p1 = 0.5 + k) (default: %(default)s)")
    parser.add_argument("--values", nargs="+",
                        help=f"the values (default for {sw.BIAS_STRENGTH}: "
                             f"{' '.join(sw.DEFAULT_VALUES)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(sw.DEFAULT_SEEDS),
                        help=f"values of {sw.SEED_KEY} (default: %(default)s)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="settings of every experiment (e.g. train.epochs=5)")
    parser.add_argument("--method", default="fixed", help="threshold method in the figure")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between checks")
    parser.add_argument("--grid", default="metrics/grid.csv", help="inside each experiment")
    parser.add_argument("--headline", default="metrics/fairness.json",
                        help="inside each experiment")
    parser.add_argument("--out", default="metrics/sweep.csv", help="the table")
    parser.add_argument("--figure", default="reports/sweep.png")
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="run on this Ray cluster (auto: the one this machine is part of; "
                             "host:port of its head) instead of DVC's queue")
    parser.add_argument("--git-remote", default="origin",
                        help="--ray: the Git remote the workers clone and push experiments to")
    parser.add_argument("--events", default="",
                        help="--ray: append each task's steps to this file, one JSON line "
                             "each (a path every worker can write)")


def run_experiments(experiments: list[sw.Experiment], params: dict,
                    args) -> tuple[dict, dict, dict]:
    """Each experiment's outcome, grid and error (by name), run from DVC's queue or on Ray."""
    if args.ray:
        try:
            return on_ray(experiments, params, args)
        except KeyboardInterrupt:
            print("sweep: interrupted; the running experiments were stopped, those pushed "
                  "stay on the Git remote and the next run takes them as they are",
                  file=sys.stderr)
            sys.exit(130)
    try:
        queue(experiments)
        start_worker()
        outcomes = wait(experiments, args.poll, args.headline)
    except KeyboardInterrupt:
        stop(experiments, "interrupted")
        sys.exit(130)
    except ValueError:
        stop(experiments, "stopped")
        raise
    return outcomes, *collect(outcomes, args.grid)


def run(args) -> int:
    with _signals_as_ctrl_c():
        return sweep(args)


def sweep(args) -> int:
    """Plan the sweep (a bad setting stops it before anything is queued), run it, and write
    the table and its figure."""
    if not Path("dvc.yaml").is_file():
        raise ValueError(f"{Path.cwd()}: no dvc.yaml; run the sweep from the repository root")
    if args.values is None and args.param != sw.BIAS_STRENGTH:
        raise ValueError(f"--values: give the values of {args.param} (make sweep: SWEEP="
                         f"{args.param} VALUES=\"...\")")
    args.values = args.values or list(sw.DEFAULT_VALUES)
    start = time.monotonic()
    params = load_params()
    experiments = sw.plan(args.param, args.values, args.seeds, params=params,
                          prefix=time.strftime("sweep-%Y%m%d-%H%M%S"), fixed=args.set)
    for exp in experiments:  # a bad setting stops the sweep now, not each experiment later
        try:
            parse_params(sw.applied(params, exp.settings))
        except ConfigError as exc:
            raise ValueError(f"{' '.join(exp.settings)}: {exc}") from None
    if args.ray:  # named after their params: a second run finds them on the Git remote
        experiments = ray_cluster.named(experiments, params)
    print(f"sweep: {args.param} = {' '.join(args.values)} x {sw.SEED_KEY} = "
          f"{' '.join(map(str, args.seeds))}: {len(experiments)} experiments", flush=True)
    outcomes, grids, errors = run_experiments(experiments, params, args)
    table = sw.sweep_table(experiments, outcomes, grids, param=args.param, errors=errors)
    # the experiments' own level (the seeds' intervals are combined at it)
    level = parse_params(sw.applied(params, experiments[0].settings)).evaluate.level
    figure = sweep_figure(table, method=args.method, level=level)

    artifacts.write_csv(table, args.out)
    with artifacts.atomic_path(args.figure) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    failed = table.loc[table["status"] == sw.FAILED, ["experiment", "error"]]
    for row in failed.itertuples():
        print(f"sweep: failed: {row.experiment}: {row.error}", file=sys.stderr)
    minutes, seconds = divmod(round(time.monotonic() - start), 60)
    print(f"sweep: {len(experiments) - len(failed)} of {len(experiments)} experiments "
          f"succeeded in {minutes} min {seconds:02d} s -> {args.out}, {args.figure}")
    # the interpreter's last garbage collection, over every object of pandas, scipy and
    # matplotlib, takes a third of a second at exit, for nothing: the process ends here
    gc.freeze()
    return 0


@contextlib.contextmanager
def _signals_as_ctrl_c():
    """`kill` and a closed terminal stop the sweep as Ctrl-C does, its experiments included
    (under nohup, SIGHUP stays ignored and the sweep goes on); the handlers before are
    restored after (the tests run it in their own process)."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    for signum, handler in before.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _interrupt)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt

