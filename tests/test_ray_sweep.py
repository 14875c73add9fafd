"""The sweep on a Ray cluster (biaslab/sweep/ray_cluster.py, its task ray_task.py): names, checks,
and one real sweep.

The real sweep runs on a local cluster of two nodes started here, on loopback only
(``ray_cluster.local_cluster``; tests/test_ray_loopback.py checks its sockets), each
declaring one logical GPU, with a bare Git repository and a local folder as the Git and DVC
remotes; a worker is killed in the middle of its task, and the driver is stopped halfway and
started again. Its results are compared with the same four experiments run one after another
from DVC's queue.
"""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from biaslab.sweep import ray_cluster as rs
from biaslab.sweep import ray_task
from biaslab.sweep import table as sw
from biaslab.sweep.results import split
from tests.conftest import ROOT, copy_repo, edit_params, repo_env, sh

PARAMS = {"weights": {"schemes": ["none"]}, "train": {"epochs": 1},
          "evaluate": {"n_boot": 20, "n_perm": 50}}
SWEEP = ["--param", "evaluate.shift_p", "--values", "0.3", "0.7", "--seeds", "0", "1"]
# about 2.5 minutes on the 2-core machine when it is not shared; far longer when it is
TIMEOUT = 900


# ------------------------------------------------------------------ names and checks

def test_the_name_is_a_hash_of_the_validated_params():
    params = {"train": {"lr": 0.002}, "evaluate": {"shift_p": 0.5}}
    one = rs.experiment_name(params, ["evaluate.shift_p=0.3"])
    assert re.fullmatch(r"sweep-[0-9a-f]{12}", one)
    assert rs.experiment_name(params, ["evaluate.shift_p=0.30"]) == one  # same value
    assert rs.experiment_name({}, ["evaluate.shift_p=0.3", "train.lr=0.002"]) == one  # defaults
    assert rs.experiment_name(params, ["evaluate.shift_p=0.7"]) != one


def test_two_experiments_with_the_same_params_are_refused():
    plan = sw.plan("evaluate.shift_p", ["0.3", "0.30"], [0], prefix="s")
    with pytest.raises(ValueError, match=r"VALUES: evaluate.shift_p=0.3 .* and "
                                         r"evaluate.shift_p=0.30 .* give the same params"):
        rs.named(plan, {})
    named = rs.named(plan[:1], {})
    assert named[0].settings == plan[0].settings and named[0].name.startswith("sweep-")


def test_the_ref_is_where_dvc_keeps_experiments():
    assert ray_task.exp_ref("ab" + "c" * 38, "sweep-x") == f"refs/exps/ab/{'c' * 38}/sweep-x"


def git(repo):
    def run(*args):
        proc = sh(repo, *args, check=False)
        if proc.returncode:
            raise ValueError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout
    return run


def test_the_driver_refuses_what_workers_could_not_clone(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q", "-b", "main")
    (repo / "params.yaml").write_text("train: {}\n")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "one")
    with pytest.raises(ValueError, match="no Git remote 'origin': add one every machine"):
        rs.git_remote_url("origin", git(repo))
    sh(tmp_path, "git", "init", "-q", "--bare", "remote.git")
    sh(repo, "git", "remote", "add", "origin", "../remote.git")
    assert rs.git_remote_url("origin", git(repo)) == str(tmp_path / "remote.git")
    with pytest.raises(ValueError, match=r"commit [0-9a-f]{8} is not on the Git remote 'origin'"
                                         r".*git push origin HEAD"):
        rs.check_commit("origin", [], git(repo))
    sh(repo, "git", "push", "-q", "origin", "main")
    assert rs.check_commit("origin", [], git(repo)) == sh(repo, "git", "rev-parse",
                                                           "HEAD").stdout.strip()
    (repo / "params.yaml").write_text("train: {lr: 1}\n")
    with pytest.raises(ValueError, match=r"uncommitted changes \(params.yaml\)"):
        rs.check_commit("origin", [], git(repo))
    assert rs.check_commit("origin", ["params.yaml"], git(repo))  # the sweep's own outputs


def test_the_default_dvc_remote_is_read_from_dvcs_config():
    config = {"core": {"remote": "storage"}, "remote": {"storage": {"url": "/mnt/store"}}}
    assert rs.dvc_remote(config) == ("storage", "/mnt/store")
    with pytest.raises(ValueError, match="no default DVC remote: .* dvc remote add -d storage"):
        rs.dvc_remote({"core": {}, "remote": config["remote"]})
    with pytest.raises(ValueError, match="the default DVC remote 'other' .* dvc remote add "
                                         "other URL"):
        rs.dvc_remote({"core": {"remote": "other"}, "remote": config["remote"]})


def test_the_driver_fetches_each_experiment_and_reads_it_from_its_commit(tmp_path, monkeypatch):
    """What the driver does with each task's result (biaslab/cli/sweep.py, bring_back): the ref
    fetched from the Git remote (as ``dvc exp pull`` fetches it), the headline and grid read
    from its commit; an unreadable one, or a task that failed, is failed with its reason."""
    from argparse import Namespace

    from biaslab.cli import sweep as tool

    repo, clone = tmp_path / "repo", tmp_path / "clone"
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", "remote.git")
    sh(tmp_path, "git", "clone", "-q", str(tmp_path / "remote.git"), str(repo))
    (repo / "params.yaml").write_text("train: {}\n")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    sh(repo, "git", "push", "-q", "origin", "HEAD:main")
    commit = sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    # the experiments, as the tasks push them: a commit on the baseline, under its ref
    sh(tmp_path, "git", "clone", "-q", str(tmp_path / "remote.git"), str(clone))
    good_grid, good_headline = ("scheme,method,accuracy\nnone,fixed,0.9\n",
                                '{"none": {"fixed": {"acc": 0.9}}}')
    for name, grid, headline in (("sweep-good", good_grid, good_headline),
                                 ("sweep-bad", '"unclosed\n', good_headline),
                                 ("sweep-empty", good_grid, "{}")):
        (clone / "metrics").mkdir(exist_ok=True)
        (clone / "metrics" / "fairness.json").write_text(headline)
        (clone / "metrics" / "grid.csv").write_text(grid)
        sh(clone, "git", "add", "-A")
        sh(clone, "git", "commit", "-qm", name)
        sh(clone, "git", "push", "-q", "origin", f"HEAD:{ray_task.exp_ref(commit, name)}")
        sh(clone, "git", "reset", "-q", "--hard", commit)
    monkeypatch.chdir(repo)
    args = Namespace(git_remote="origin", headline="metrics/fairness.json",
                     grid="metrics/grid.csv")
    back = tool.bring_back([{"name": "sweep-good", "state": "success"},
                            {"name": "sweep-bad", "state": "success"},
                            {"name": "sweep-empty", "state": "success"},
                            {"name": "sweep-log", "state": "failed",
                             "log": "x\nsplit: error: why\ny"},
                            {"name": "sweep-died", "state": "failed", "error": "worker died"}],
                           commit, args)
    outcomes, grids, errors = split(back)
    good = sh(repo, "git", "rev-parse", ray_task.exp_ref(commit, "sweep-good")).stdout.strip()
    assert outcomes["sweep-good"] == sw.Outcome(sw.SUCCESS, good, {"none": {"fixed": {"acc": 0.9}}})
    assert grids["sweep-good"].to_dict("records") == [
        {"scheme": "none", "method": "fixed", "accuracy": 0.9}]
    assert {name: o.state for name, o in outcomes.items()} == {
        "sweep-good": "success", "sweep-bad": "failed", "sweep-empty": "failed",
        "sweep-log": "failed", "sweep-died": "failed"}
    assert set(grids) == {"sweep-good"}
    assert errors["sweep-bad"].startswith("unreadable in the experiment's commit: ")
    assert errors["sweep-empty"].endswith("metrics/fairness.json: no headline figures")
    assert errors["sweep-log"] == "split: error: why" and errors["sweep-died"] == "worker died"
    # a ref the Git remote lacks (removed meanwhile): failed, the sweep goes on
    gone = tool.bring_back([{"name": "sweep-gone", "state": "success"}], commit, args)
    assert gone["sweep-gone"].outcome.state == sw.FAILED and gone["sweep-gone"].error.startswith(
        "not fetched: git fetch")


def test_an_address_where_no_cluster_listens_is_refused_at_once():
    with pytest.raises(ValueError, match=r"RAY=127.0.0.1:1: no Ray cluster there .*ray start "
                                         "--head"):
        rs.connect("127.0.0.1:1", 1)


def test_a_cluster_that_refuses_the_driver_is_told_apart_from_none(monkeypatch):
    """A head that asks for a token (Ray's token authentication) refuses a driver without
    RAY_AUTH_MODE=token with the same ConnectionError as no cluster at all: the listening port
    tells them apart, and the error says what to set."""
    import socket

    import ray

    def refused(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster")

    monkeypatch.setattr(ray, "init", refused)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(ValueError, match=rf"RAY={address}: a Ray cluster listens there "
                                             r".*export RAY_AUTH_MODE=token.*RAY=auto"):
            rs.connect(address, 1)
        monkeypatch.setenv("RAY_AUTH_MODE", "token")  # set already: the plain error
        with pytest.raises(ValueError, match="no Ray cluster there"):
            rs.connect(address, 1)


def test_a_killed_tasks_folder_is_removed_a_running_ones_is_not(tmp_path):
    running, killed = (tmp_path / f"biaslab-sweep-{n}-x" for n in ("a", "b"))
    for folder in (running, killed):
        (folder / ".git").mkdir(parents=True)
        Path(f"{folder}.lock").touch()
    with open(f"{running}.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as its task holds it while alive
        ray_task._remove_stale(tmp_path)
        assert running.exists() and Path(f"{running}.lock").exists()
    assert not killed.exists() and not Path(f"{killed}.lock").exists()


def test_an_ignored_sigchld_is_seen():
    """Ray's workers ignore SIGCHLD (set in C) when the raylet reaps orphans; the task undoes
    it, or every command it runs would seem to succeed."""
    assert not ray_task._ignored(signal.SIGCHLD)
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        assert ray_task._ignored(signal.SIGCHLD)
        assert subprocess.run(["false"]).returncode == 0  # why it matters
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert subprocess.run(["false"]).returncode == 1


# ------------------------------------------------------------------ a real sweep

def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} in {timeout:.0f} s")


def sweep(repo: Path, *args: str) -> subprocess.Popen:
    # `python -m` puts the cwd first: the tiny repo's copy of biaslab runs, the checkout's after
    env = {**repo_env(), **rs.LOCAL_ENV, "PYTHONPATH": str(ROOT)}  # a loopback cluster
    return subprocess.Popen([sys.executable, "-m", "biaslab", "sweep", *SWEEP, *args],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def table(repo: Path) -> pd.DataFrame:
    got = pd.read_csv(repo / "metrics" / "sweep.csv").drop(columns="experiment")
    return got.sort_values(["value", "seed", "scheme", "method"]).reset_index(drop=True)


def overlapping(attempts: list[dict]) -> list[tuple[dict, dict]]:
    return [(a, b) for i, a in enumerate(attempts) for b in attempts[i + 1:]
            if a["start"] < b["end"] and b["start"] < a["end"]]


@pytest.mark.slow
def test_a_sweep_on_a_two_node_ray_cluster(tiny_repo, tmp_path):
    """Four experiments two at a time, a worker killed, the driver stopped and started again:
    each experiment pushed once, and the same results as DVC's queue."""
    repo = copy_repo(tiny_repo, tmp_path / "repo")
    edit_params(repo, **PARAMS)
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", "remote.git")
    sh(repo, "git", "remote", "add", "origin", str(tmp_path / "remote.git"))
    sh(repo, "dvc", "remote", "add", "-q", "-d", "storage", str(tmp_path / "store"))
    sh(repo, "git", "commit", "-qam", "sweep params, remotes")
    sh(repo, "git", "push", "-q", "origin", "HEAD:main")
    local = copy_repo(repo, tmp_path / "local")
    log = tmp_path / "events.jsonl"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    # the reference: the same sweep from DVC's queue, one at a time, meanwhile (polled every
    # 5 s: each look is a `dvc exp show`, which costs a second of CPU)
    procs, cluster = [sweep(local, "--poll", "5")], None
    try:
        cluster = rs.local_cluster(("0", "1"))
        driver = sweep(repo, "--ray", cluster.address, "--events", str(log))
        procs.append(driver)
        # a worker dies: the worker of the first experiment to start, while DVC runs it
        first = wait_for(lambda: [e for e in events(log) if e["event"] == "dvc"], 120,
                         "task running dvc")[0]
        time.sleep(1)
        os.kill(first["pid"], signal.SIGKILL)
        stops = [time.time()]
        # the driver is stopped once two experiments are pushed, as Ctrl-C or `kill` stop it
        wait_for(lambda: len([e for e in events(log) if e["event"] == "end"]) >= 2, TIMEOUT,
                 "two experiments pushed")
        driver.send_signal(signal.SIGTERM)
        stopped, _ = driver.communicate(timeout=60)
        stops.append(time.time())
        assert driver.returncode == 130 and "sweep: interrupted" in stopped, stopped[-2000:]
        # started again, it runs only what the Git remote lacks
        procs.append(sweep(repo, "--ray", cluster.address, "--events", str(log)))
        out = finish(procs[-1], TIMEOUT)
        found = re.search(r"(\d) experiment\(s\) on the Git remote already; (\d) submitted", out)
        assert found and int(found[1]) >= 2 and int(found[1]) + int(found[2]) == 4, out
        assert "4 of 4 experiments succeeded" in out
        # a sweep that shares one experiment with the first and has one that fails (split
        # cannot draw more training rows than there are): the shared one is not run again,
        # the failure is reported with its error line
        size = yaml.safe_load((repo / "params.yaml").read_text())["split"]["train_size"]
        procs.append(sweep(repo, "--ray", cluster.address, "--events", str(log),
                           "--out", "metrics/second.csv", "--figure", "reports/second.png",
                           "--param", "split.train_size", "--values", str(size), "100000",
                           "--seeds", "0", "--set", "evaluate.shift_p=0.3"))
        second = finish(procs[-1], TIMEOUT)
        assert "1 experiment(s) on the Git remote already; 1 submitted" in second, second
        assert "1 of 2 experiments succeeded" in second
        reference = finish(procs[0], TIMEOUT)
        assert "4 of 4 experiments succeeded" in reference
        print(f"on Ray: {out.splitlines()[-1]}\nDVC's queue: {reference.splitlines()[-1]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if cluster:
            cluster.shutdown()
        sh(local, "dvc", "queue", "stop", "--kill", check=False)  # its worker is detached

    # nothing lost, nothing twice: each experiment pushed once; the killed one ran again
    steps = events(log)
    names = set(pd.read_csv(repo / "metrics" / "sweep.csv")["experiment"])
    ended = [e["name"] for e in steps if e["event"] == "end"]
    assert len(names) == 4 and len(ended) == len(set(ended)) and set(ended) <= names
    assert [e["name"] for e in steps if e["event"] == "start"].count(first["name"]) >= 2
    assert not [e for e in steps if e["event"] == "skip"]
    refs = sh(repo, "git", "ls-remote", str(tmp_path / "remote.git"), "refs/exps/*").stdout
    assert sorted(line.rsplit("/", 1)[1] for line in refs.splitlines()) == sorted(names)
    # the failed experiment: its error in the table, nothing of it pushed
    both = pd.read_csv(repo / "metrics" / "second.csv").set_index("status")
    assert set(both.loc[["success"], "experiment"]) <= names
    failed = both.loc["failed"]
    assert failed["value"] == 100000 and failed["experiment"] not in names
    assert failed["error"].startswith("split: error: split.train_size: 100000 training rows")
    assert [e["name"] for e in steps if e["event"] == "failed"] == [failed["experiment"]]
    # two at a time, each on its own device (an attempt killed or stopped ends then)
    attempts = [{"start": s["time"], "cuda": s["cuda"], "end": next(
        (e["time"] for e in steps if e["pid"] == s["pid"] and e["name"] == s["name"]
         and e["event"] in ("end", "failed")),
        min([t for t in stops if t > s["time"]], default=np.inf))}
        for s in steps if s["event"] == "start"]
    assert {a["cuda"] for a in attempts} == {"0", "1"}
    together = overlapping(attempts)
    assert together and all(a["cuda"] != b["cuda"] for a, b in together)
    # the same table as DVC's queue, but for the experiments' names
    pd.testing.assert_frame_equal(table(repo), table(local), check_exact=True)
    # a model (every output, in fact) comes from the DVC remote into a fresh clone
    fresh = tmp_path / "fresh"
    sh(tmp_path, "git", "clone", "-q", str(tmp_path / "remote.git"), str(fresh))
    name = sorted(names)[0]
    sh(fresh, "dvc", "exp", "pull", "-q", "--no-cache", "origin", name)
    sh(fresh, "dvc", "exp", "branch", "-q", name, "result")
    sh(fresh, "git", "checkout", "-q", "result")
    assert not list(fresh.glob("models/**/*.pt"))
    # a sweep experiment ran the pipeline up to evaluate (biaslab.sweep.table.TARGETS): its outputs
    sh(fresh, "dvc", "pull", "-q", "--with-deps", *sw.TARGETS)
    assert list(fresh.glob("models/**/*.pt"))
    assert "Data and pipelines are up to date" in sh(fresh, "dvc", "status", "--with-deps",
                                                     *sw.TARGETS).stdout
    # every process started here has ended (the killed task's DVC and stage too), and the
    # tasks' folders are gone
    scratch = Path(tempfile.gettempdir())
    places = [str(tmp_path), *[str(scratch / f"biaslab-{name}-") for name in names]]
    wait_for(lambda: not left_running(before, places), 30, "end of every process started here")
    assert not [p for name in names for p in scratch.glob(f"biaslab-{name}-*")]


def left_running(before: set[int], places: list[str]) -> list[psutil.Process]:
    """Processes this test started, or working in one of ``places``, still alive."""
    alive = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            ours = proc.pid not in before and os.getpid() in [p.pid for p in proc.parents()]
            if ours or proc.cwd().startswith(tuple(places)):
                alive.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return alive
