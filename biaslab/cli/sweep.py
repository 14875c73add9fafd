"""The headline figures against a param: one DVC experiment per value x training seed.

Queues one experiment per (value, training seed) with `dvc exp run --queue`, runs them one at a
time with `dvc queue start`, reads each one from its Git commit as it ends, then writes
metrics/sweep.csv (one row per experiment x scheme x method: the figures and gaps with their
intervals), reports/sweep.png, and the rank test of the schemes and methods over the values x
seeds (metrics/sweep_ranks.csv, reports/sweep_ranks.png: biaslab.fairness.ranks).
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
# How: each experiment is read once, as it ends, from its own commit (git show; the headline
# and grid.csv: biaslab.sweep.results), on DVC's queue (biaslab.cli.sweep_queue, which watches
# the queue's state files, never `dvc exp show`) as on Ray (biaslab.sweep.ray_cluster);
# biaslab.sweep.table has the plan and the table.

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import signal
import sys
import time
from pathlib import Path

from biaslab.cli.sweep_queue import command, run_local
from biaslab.config import ConfigError, load_params, parse_params
from biaslab.sweep import ray_cluster, ray_task
from biaslab.sweep import results as rs
from biaslab.sweep import table as sw

EXAMPLES = """\
  biaslab sweep                                  # bias strength k = 0 0.1 ... 0.5, seeds 0 1
  biaslab sweep --values 0 0.2 0.4 --seeds 0 1 2 --set train.epochs=5
  biaslab sweep --param split.train_size --values 60 120 216 --seeds 0
  biaslab sweep --ray auto --values 0 0.2 0.4    # on the Ray cluster of this machine
  biaslab sweep --ray 10.0.0.5:6379 --git-remote lab   # on that cluster's head, through `lab`
  make sweep SWEEP=split.train_size VALUES="60 120 216" SEEDS="0 1 2" SWEEP_SET="train.epochs=5"
"""


def on_ray(experiments: list[sw.Experiment], params: dict, args) -> dict[str, rs.Result]:
    """Run the sweep on the Ray cluster ``args.ray``: each experiment's result, by name.

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
    back: dict[str, rs.Result] = {}
    ray_cluster.run(experiments, jobs, address=args.ray, res=res, done=done,
                  say=lambda line: print(line, flush=True),
                  on_results=lambda results: back.update(bring_back(results, commit, args)))
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


def bring_back(results: list[dict], commit: str, args) -> dict[str, rs.Result]:
    """The result of each of ``results``, those of Ray tasks (biaslab/sweep/ray_cluster.py).

    A success's Git ref is fetched from the Git remote, as ``dvc exp pull -f --no-cache``
    fetches it (its commit: the experiment is then in ``dvc exp show``; its models stay on the
    DVC remote), and its headline and grid.csv are read from that commit
    (:func:`biaslab.sweep.results.from_commit`, as a local sweep reads its experiments): a
    success whose headline or grid cannot be read is failed.
    """
    back, refs = {}, {}
    for result in results:
        name = result["name"]
        if result["state"] == sw.SUCCESS:
            refs[name] = ray_task.exp_ref(commit, name)
        else:
            back[name] = rs.failed(log=result.get("log"), error=result.get("error", "failed"))
    try:
        if refs:
            command("git", "fetch", "-q", args.git_remote, *[f"+{r}:{r}" for r in refs.values()])
    except ValueError as exc:  # on the Git remote still: the next run fetches them
        return back | {name: rs.failed(error=f"not fetched: {exc}") for name in refs}
    for name, ref in refs.items():
        try:
            rev = command("git", "rev-parse", ref).strip()
        except ValueError as exc:
            back[name] = rs.failed(error=f"{rs.UNREADABLE}{exc}")
            continue
        back[name] = rs.from_commit(rev, lambda path, rev=rev: command(
            "git", "show", f"{rev}:{path}"), headline_file=args.headline, grid_file=args.grid)
    return back


def rank_test(table, figure: str, alpha: float):
    """The rank test of the schemes and methods over the sweep's values x seeds (each a block),
    and its sentence; None and why, when the sweep cannot support one."""
    from biaslab.fairness.ranks import rank_methods, sentence

    done = table[table["status"] == sw.SUCCESS]
    try:
        result = rank_methods(done, figure, blocks=["value", "seed"], level=alpha)
    except ValueError as exc:  # one method, one block, an attribute the runs lack: said
        return None, f"none ({exc})"
    return result, sentence(result)


def check_rank_by(figure: str) -> None:
    """--rank-by names a figure of grid.csv, checked before any experiment runs."""
    from biaslab.fairness.ranks import ranked_by

    ranked_by(figure, f"--rank-by {figure!r}")


def ranks_table(out: str) -> str:
    """metrics/sweep.csv -> metrics/sweep_ranks.csv."""
    path = Path(out)
    return str(path.with_name(f"{path.stem}_ranks{path.suffix}"))


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
    parser.add_argument("--poll", type=float, default=1.0,
                        help="seconds between looks at DVC's queue (a few ms each)")
    parser.add_argument("--grid", default="metrics/grid.csv", help="inside each experiment")
    parser.add_argument("--headline", default="metrics/fairness.json",
                        help="inside each experiment")
    parser.add_argument("--out", default="metrics/sweep.csv", help="the table")
    parser.add_argument("--figure", default="reports/sweep.png")
    parser.add_argument("--rank-by", default="balanced_accuracy", metavar="FIGURE",
                        help="rank every scheme/method within each value x seed on this "
                             "figure of grid.csv (a gap: by its distance from its ideal) and "
                             "test the ranks (default: %(default)s)")
    parser.add_argument("--ranks", default="reports/sweep_ranks.png",
                        help="the rank test's critical-difference diagram; its table is "
                             "written beside --out (NAME_ranks.csv)")
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
            return rs.split(on_ray(experiments, params, args))
        except KeyboardInterrupt:
            print("sweep: interrupted; the running experiments were stopped, those pushed "
                  "stay on the Git remote and the next run takes them as they are",
                  file=sys.stderr)
            sys.exit(130)
    # the figure's imports (scipy, matplotlib: seconds on the 2-core machine) wait until the
    # first experiment runs, rather than delay it
    return rs.split(run_local(experiments, args, meanwhile=lambda: importlib.import_module(
        "biaslab.sweep.figure")))


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
    check_rank_by(args.rank_by)
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
    from biaslab import artifacts
    from biaslab.sweep.figure import sweep_figure

    figure = sweep_figure(table, method=args.method, level=level)
    ranked, said = rank_test(table, args.rank_by, 1 - level)

    artifacts.write_csv(table, args.out)
    with artifacts.atomic_path(args.figure) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    if ranked is not None:
        from biaslab.fairness.ranks import table_of
        from biaslab.report.cd_diagram import cd_diagram

        artifacts.write_csv(table_of(ranked), ranks_table(args.out))
        artifacts.write_bytes(cd_diagram(ranked), args.ranks)
    print(f"sweep: ranks: {said}")
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

