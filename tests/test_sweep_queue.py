"""The local sweep's waiting, piece by piece: an experiment read from its commit (both drivers),
what DVC's queue files say (biaslab.sweep.local_queue), and the command's reading of them
(biaslab.cli.sweep_queue) on a repository laid out as DVC 3.67's queue leaves it. The real queue
runs in tests/test_sweep.py::test_sweep_end_to_end."""

import json
import os
import subprocess
import sys

import pytest

from biaslab.cli import sweep_queue as sq
from biaslab.sweep import local_queue as lq
from biaslab.sweep import results as rs
from biaslab.sweep import table as sw
from tests.conftest import sh

HEADLINE = '{"none": {"fixed": {"flip_rate": 0.2}}}'
GRID = "scheme,method,flip_rate,flip_rate_lo,flip_rate_hi\nnone,fixed,0.2,0.1,0.3\n"
BASE = "ab" + "c" * 38


def files(**by_path):
    def show(path):
        if path not in by_path:
            raise ValueError(f"git show REV:{path} failed (128): path does not exist")
        return by_path[path]
    return show


# ------------------------------------------------------------------ one reader, both drivers

def test_an_experiment_is_read_from_its_commit():
    got = rs.from_commit("r" * 40, files(**{"m/h.json": HEADLINE, "m/g.csv": GRID}),
                         headline_file="m/h.json", grid_file="m/g.csv")
    assert got.outcome == sw.Outcome(sw.SUCCESS, "r" * 40, json.loads(HEADLINE))
    assert got.grid.to_dict("records") == [{"scheme": "none", "method": "fixed",
                                            "flip_rate": 0.2, "flip_rate_lo": 0.1,
                                            "flip_rate_hi": 0.3}]
    assert got.error is None


@pytest.mark.parametrize(("by_path", "says"), [
    ({"m/h.json": HEADLINE, "m/g.csv": '"unclosed\n'}, "EOF inside string"),
    ({"m/h.json": "{}", "m/g.csv": GRID}, "m/h.json: no headline figures"),
    ({"m/h.json": "[1]", "m/g.csv": GRID}, "m/h.json: no headline figures"),
    ({"m/h.json": "{not json", "m/g.csv": GRID}, "Expecting property name"),
    ({"m/g.csv": GRID}, "git show REV:m/h.json failed"),
])
def test_a_success_whose_figures_cannot_be_read_is_failed(by_path, says):
    got = rs.from_commit("r" * 40, files(**by_path), headline_file="m/h.json",
                         grid_file="m/g.csv")
    assert got.outcome == sw.Outcome(sw.FAILED, "r" * 40) and got.grid is None
    assert got.error.startswith("unreadable in the experiment's commit: ") and says in got.error


def test_a_failure_says_its_logs_error_line_else_the_reason_given():
    assert rs.failed(log="x\nsplit: error: why\ny").error == "split: error: why"
    assert rs.failed(log="  \n", error="worker died").error == "worker died"
    assert rs.failed().outcome == sw.Outcome(sw.FAILED)
    assert sw.error_line("Running stage 'train':\nUpdating lock file 'dvc.lock'\n") is None
    outcomes, grids, errors = rs.split({"a": rs.failed(error="x"), "b": rs.from_commit(
        "r", files(h=HEADLINE, g=GRID), headline_file="h", grid_file="g")})
    assert {n: o.state for n, o in outcomes.items()} == {"a": "failed", "b": "success"}
    assert list(grids) == ["b"] and errors == {"a": "x"}


# ------------------------------------------------------------------ what the queue says

def test_the_stash_and_the_refs_are_read_as_dvc_writes_them():
    reflog = (f"commit: dvc-exp:{'1' * 40}:{BASE}:sweep-a-v1-s0\n"
              f"commit: dvc-exp:{'2' * 40}:{BASE}:sweep-a-v0-s0:some-branch\n"
              "WIP on main: something else\n")
    assert lq.stash_names(reflog) == ["sweep-a-v1-s0", "sweep-a-v0-s0"]
    assert lq.stash_names("") == []
    prefix = lq.exp_ref_prefix(BASE)
    assert prefix == f"refs/exps/ab/{'c' * 38}/"
    listing = (f"{'e' * 40} {prefix}sweep-a-v0-s0\n{'f' * 40} refs/exps/12/{'3' * 38}/other\n"
               f"{'9' * 40} {prefix}nested/name\n")
    assert lq.exp_refs(listing, BASE) == {"sweep-a-v0-s0": "e" * 40}


def test_the_status_names_are_dvcs():
    from dvc.repo.experiments.executor.base import TaskStatus

    assert lq.TASK_STATUS == tuple(s.name.lower() for s in sorted(TaskStatus))
    assert lq.TERMINAL == {"failed", "canceled", "finished"} <= set(lq.TASK_STATUS)


def snap(queued=(), tasks=None, refs=None, worker=True, busy=False) -> lq.Snapshot:
    return lq.Snapshot(frozenset(queued), tasks or {}, refs or {}, worker, busy)


def test_state_a_ref_first_then_the_task_then_the_stash():
    s = snap(queued={"q"}, refs={"ok": "r", "both": "r"},
             tasks={"run": lq.Task("running", True), "col": lq.Task("success", True),
                    "bad": lq.Task("failed", False), "killed": lq.Task("finished", False),
                    "both": lq.Task("finished", False)})
    assert {n: lq.state(n, s) for n in ("q", "ok", "both", "run", "col", "bad", "killed",
                                        "gone")} == {
        "q": "queued", "ok": "success", "both": "success", "run": "running",
        "col": "running",  # exec-run succeeded, the worker is collecting it
        "bad": "failed", "killed": "failed", "gone": "missing"}
    assert lq.waiting(s) == ["q", "col", "run"]


def test_watch_reports_each_end_once():
    watch = lq.Watch(["a", "b"], grace=5, stall=60)
    assert watch.look(snap(queued={"a", "b"}), 0) == ([], False)
    assert watch.look(snap({"b"}, {"a": lq.Task("running", True)}, busy=True), 2) == ([], False)
    ended, restart = watch.look(snap({"b"}, {"a": lq.Task("finished", False)}, {"a": "r"}), 4)
    assert ended == [lq.Ended("a", "success", rev="r")] and not restart
    assert watch.look(snap({"b"}, {"a": lq.Task("finished", False)}, {"a": "r"}), 6)[0] == []
    ended, _ = watch.look(snap(tasks={"b": lq.Task("failed", False)}, refs={"a": "r"}), 8)
    assert ended == [lq.Ended("b", "failed", reason=lq.FROM_LOG)] and watch.pending() == []


def test_watch_a_moment_out_of_the_stash_is_no_loss_but_a_lasting_one_is():
    watch = lq.Watch(["a", "b"], grace=5, stall=60)
    watch.look(snap(queued={"a", "b"}), 0)
    # the worker took `a` from the stash and has not written its info file yet
    assert watch.look(snap(queued={"b"}), 1) == ([], False)
    assert watch.look(snap(queued={"b"}), 9) == ([], False)
    assert watch.seen["a"] == "queued"
    # `b` leaves the stash while `a` runs (the worker runs one at a time): removed
    running = {"a": lq.Task("running", True)}
    assert watch.look(snap(tasks=running, busy=True), 10)[0] == []
    assert watch.look(snap(tasks=running, busy=True), 15)[0] == [lq.Ended("b", "missing")]


def test_watch_a_killed_worker_is_started_again_and_its_experiment_failed():
    watch = lq.Watch(["a", "b"], grace=5, stall=60)
    watch.look(snap({"b"}, {"a": lq.Task("running", True)}, busy=True), 0)
    # the worker is killed; the experiment's process lives on: nobody will collect it, but
    # the worker waits for its end (one experiment at a time)
    orphan = snap({"b"}, {"a": lq.Task("running", True)}, worker=False, busy=True)
    assert [watch.look(orphan, t) for t in (1, 10, 20)] == [([], False)] * 3
    dead = snap({"b"}, {"a": lq.Task("success", False)}, worker=False)
    assert watch.look(dead, 22) == ([], False)  # for a moment: no verdict yet
    ended, restart = watch.look(dead, 27)
    assert ended == [lq.Ended("a", "failed", reason="the DVC queue worker stopped before it "
                              "collected this experiment")]
    assert restart  # for `b`, still queued
    assert watch.look(dead, 29) == ([], False)  # once, not at every look
    # started again, the worker runs `b`
    ended, _ = watch.look(snap(tasks={"b": lq.Task("finished", False)}, refs={"b": "r"}), 40)
    assert ended == [lq.Ended("b", "success", rev="r")]


@pytest.mark.parametrize("worker", [True, False])
def test_watch_gives_up_on_a_queue_that_runs_nothing(worker):
    watch = lq.Watch(["a", "b", "c", "d"], grace=5, stall=60)
    idle = snap(queued={"a", "b", "c", "d"}, worker=worker)
    watch.look(idle, 0)
    watch.look(snap(queued={"a", "b", "c", "d"}, busy=True), 30)  # another's experiment runs
    restarts = [watch.look(idle, t)[1] for t in (40, 50, 60, 80)]
    assert restarts == ([False] * 4 if worker else [False, True, False, True])
    with pytest.raises(ValueError) as error:
        watch.look(idle, 90)
    said = ("is running but takes none of them" if worker
            else "is not running (started again, to no avail)")
    assert str(error.value) == (
        "no experiment of the sweep has moved for 60 s: 4 left (a, b, c, ...), and DVC's "
        f"queue worker {said}; see dvc queue status, and its log "
        ".dvc/tmp/exps/celery/dvc-exp-worker-1.out")


# ------------------------------------------------------------------ the command's reading

@pytest.fixture
def queue_repo(tmp_path, monkeypatch):
    """A repository laid out as DVC's queue leaves it mid-sweep: `q` queued, `r` running, `f`
    failed, `k` killed, `ok` ended with its commit; the worker gone. Returns the repo,
    baseline and the experiment's commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    (repo / "params.yaml").write_text("train: {}\n")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    base = sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    (repo / "metrics").mkdir()
    (repo / "metrics" / "fairness.json").write_text(HEADLINE)
    (repo / "metrics" / "grid.csv").write_text(GRID)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "experiment")
    exp = sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    sh(repo, "git", "update-ref", f"{lq.exp_ref_prefix(base)}ok", exp)
    sh(repo, "git", "update-ref", "--create-reflog", "-m",
       f"commit: dvc-exp:{base}:{base}:q", sq.STASH, base)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for name, status, pid, code, log in (
            ("r", 2, os.getpid(), None, "Running stage 'train':\n"),
            ("f", 4, gone.pid, 255, "evaluate: error: too few rows\nERROR: failed\n"),
            ("k", 2, gone.pid, None, "Running stage 'train':\nERROR: killed by signal 9\n")):
        run = repo / sq.RUN_DIR / f"{name}{'0' * 39}"
        run.mkdir(parents=True)
        (run / f"{run.name}.run").write_text(json.dumps({"name": name, "status": status}))
        (run / f"{run.name}.json").write_text(json.dumps({"pid": pid, "returncode": code}))
        (run / f"{run.name}.out").write_text(log)
    (repo / sq.WORKER_INFO).parent.mkdir(parents=True)
    (repo / sq.WORKER_INFO).write_text(json.dumps({"pid": gone.pid, "returncode": None}))
    monkeypatch.chdir(repo)
    return repo, base, exp


def test_the_command_reads_the_queue_as_dvc_leaves_it(queue_repo):
    repo, base, exp = queue_repo
    got, logs = sq.snapshot(base)
    assert got == lq.Snapshot(frozenset({"q"}), {
        "r": lq.Task("running", True), "f": lq.Task("failed", False),
        "k": lq.Task("running", False)}, {"ok": exp}, worker=False, busy=True)
    assert logs["f"].read_text().startswith("evaluate: error:")
    assert set(sq.snapshot(base, {"q", "k"})[0].tasks) == {"k"}


def test_the_command_waits_and_reads_each_experiment_once(queue_repo, monkeypatch, capsys):
    repo, base, exp = queue_repo
    started = []
    monkeypatch.setattr(sq, "start_worker", lambda: lambda: started.append(1))
    monkeypatch.setattr(sq.time, "sleep", lambda seconds: None)
    plan = [sw.Experiment(n, 0.1, 0, (f"x={n}",)) for n in ("ok", "f", "k")]
    results = sq.wait(plan, base, poll=1, headline="metrics/fairness.json",
                      grid="metrics/grid.csv", watch=lq.Watch([e.name for e in plan], grace=0))
    assert results["ok"].outcome == sw.Outcome(sw.SUCCESS, exp, json.loads(HEADLINE))
    assert results["f"].error == "evaluate: error: too few rows"
    assert results["k"].error == ("the DVC queue worker stopped before it collected this "
                                  "experiment (ERROR: killed by signal 9)")
    out = capsys.readouterr().out
    assert [line.split()[1:3] for line in out.splitlines()] == [
        ["1/3", "ok"], ["2/3", "f"], ["3/3", "k"]]
    assert started == []  # nothing of the sweep left to run
