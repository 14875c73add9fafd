"""A stage stopped at any moment leaves nothing that harms the next run.

- biaslab.artifacts's writers: temporary names that say whose they are, removed by the next writer
  once their process is gone (a kill -9 runs no ``finally``); the usual file mode.
- stages.run: SIGINT, SIGTERM and SIGHUP stop a stage with one line, status 128 + signal, no
  traceback and no partial output; a stage whose dvc is killed stops by itself.
- `biaslab recover` (`make recover`): stops leftover stages, removes DVC's stale locks and the
  temporaries of killed writers.
- End to end: a `dvc repro` killed with SIGKILL in prepare, train and evaluate, each time
  followed by `make recover`, ends with the artifacts of an uninterrupted run.
"""

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from biaslab import artifacts
from tests.conftest import ROOT, copy_repo, repo_env, sh

WRITERS = {
    "parquet": lambda path: artifacts.write_parquet(pd.DataFrame({"a": [1]}), path),
    "csv": lambda path: artifacts.write_csv(pd.DataFrame({"a": [1]}), path),
    "json": lambda path: artifacts.write_json({"a": 1}, path),
    "text": lambda path: artifacts.write_text("a", path),
    "bytes": lambda path: artifacts.write_bytes(b"a", path),
    "npy": lambda path: artifacts.write_npy(np.zeros(3), path),
}


def dead_pid() -> int:
    """The PID of a process that has ended (its number may be reused, rarely)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def temps(folder) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob("*") if artifacts.TEMP_NAME.match(p.name))


# ------------------------------------------------------------------ io: temporaries and mode

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=oct)
@pytest.mark.parametrize("kind", WRITERS)
def test_writers_give_artifacts_the_usual_mode(tmp_path, kind, umask):
    old = os.umask(umask)
    try:
        WRITERS[kind](tmp_path / f"artifact.{kind}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / f"artifact.{kind}").stat().st_mode)
    assert mode == 0o666 & ~umask, oct(mode)
    assert temps(tmp_path) == []


def test_a_failed_write_keeps_the_old_artifact_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    artifacts.write_json({"old": 1}, path)
    with pytest.raises(RuntimeError), artifacts.atomic_path(path) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("the stage failed")
    assert json.loads(path.read_text()) == {"old": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_temporary_names_say_whose_they_are(tmp_path):
    tmp = artifacts.temp_path(tmp_path / "pixels.npy")
    match = artifacts.TEMP_NAME.match(tmp.name)
    assert tmp.parent == tmp_path and tmp.name.startswith(".pixels.npy.tmp-")
    assert match["name"] == "pixels.npy" and int(match["pid"]) == os.getpid()
    assert artifacts.TEMP_NAME.match(tmp.name + ".raw")  # a writer's own suffix
    assert not artifacts.TEMP_NAME.match("pixels.npy")
    assert not artifacts.TEMP_NAME.match(".pixels.npy.tmp")


def test_stale_temporaries_are_those_of_dead_writers(tmp_path):
    dead = dead_pid()
    orphan = tmp_path / f".pixels.npy.tmp-{dead}-0a1b2c3d"
    orphan_raw = tmp_path / f".pixels.npy.tmp-{dead}-0a1b2c3d.raw"
    other = tmp_path / f".index.parquet.tmp-{dead}-0a1b2c3d"
    live = tmp_path / f".pixels.npy.tmp-{os.getpid()}-00000000"
    for path in (orphan, orphan_raw, other, live, tmp_path / "pixels.npy"):
        path.write_bytes(b"x")
    assert artifacts.stale_temps(tmp_path, "pixels.npy") == [orphan, orphan_raw]
    assert artifacts.clean_stale_temps(tmp_path) == [other, orphan, orphan_raw]
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, "pixels.npy"])
    assert artifacts.stale_temps(tmp_path / "missing") == []


def test_a_writer_removes_the_temporaries_its_artifact_got_from_killed_runs(tmp_path):
    dead = dead_pid()
    orphan = tmp_path / f".grid.csv.tmp-{dead}-0a1b2c3d"
    other = tmp_path / f".fairness.json.tmp-{dead}-0a1b2c3d"
    orphan.write_bytes(b"\0" * 4096)
    other.write_bytes(b"")
    artifacts.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "grid.csv")
    assert sorted(os.listdir(tmp_path)) == sorted(["grid.csv", other.name])


# ------------------------------------------------------------------ stages.run and signals

BUSY_STAGE = '''
import sys, time
from biaslab import artifacts
from stages import run

print("importing", flush=True)
time.sleep(float(sys.argv[1]))  # stands for importing torch


def main():
    with artifacts.atomic_path("out/result.txt") as tmp:
        tmp.write_text("partial")
        print("writing", flush=True)
        time.sleep(60)


if __name__ == "__main__":
    run(main, "busy")
'''


@pytest.fixture
def busy(tmp_path):
    """A folder with stages/ (this repo's __init__, and a stage `busy` that writes slowly)."""
    (tmp_path / "stages").mkdir()
    shutil.copy(ROOT / "stages" / "__init__.py", tmp_path / "stages" / "__init__.py")
    (tmp_path / "stages/busy.py").write_text(BUSY_STAGE)
    return tmp_path


def start_busy(folder, import_seconds=0.0, env=None, **kwargs):
    env = {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}", **(env or {})}
    env.pop("DVC_STAGE", None)
    return subprocess.Popen([sys.executable, "-m", "stages.busy", str(import_seconds)],
                            cwd=folder, env=env, text=True, **kwargs)


def wait_for(pipe, text, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = pipe.readline()
        if text in line:
            return
        if not line:
            break
    raise AssertionError(f"never printed {text!r}")


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["starting", "running"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda signum: signum.name)
def test_a_stopping_signal_ends_a_stage_with_one_line(busy, signum, phase):
    proc = start_busy(busy, 60 if phase == "starting" else 0, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
    wait_for(proc.stdout, "importing" if phase == "starting" else "writing")
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    name = signal.Signals(signum).name
    when = " while starting" if phase == "starting" else ""
    assert stderr == f"busy: interrupted ({name}){when}; start again with dvc repro\n"
    assert proc.returncode == 128 + signum
    assert not (busy / "out").exists() or os.listdir(busy / "out") == []  # no partial output


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["starting", "running"])
def test_a_stage_stops_when_the_dvc_that_ran_it_is_killed(busy, phase):
    """Killed while the stage writes, or while it still imports (torch takes seconds): by the
    time the stage reaches `run`, its parent is then whoever adopted it, not DVC."""
    import_seconds = 3 if phase == "starting" else 0
    # stands for dvc: runs the stage with DVC_STAGE set, as DVC does, and waits
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         f"p = subprocess.Popen({[sys.executable, '-m', 'stages.busy', str(import_seconds)]!r}, "
         "stdout=open('stage.out', 'w'), stderr=open('stage.err', 'w'))\n"
         "print(p.pid, flush=True)\ntime.sleep(120)\n"],
        cwd=busy, env={**os.environ, "PYTHONPATH": f"{busy}{os.pathsep}{ROOT}",
                       "DVC_STAGE": "busy"}, stdout=subprocess.PIPE, text=True)
    stage = psutil.Process(int(parent.stdout.readline()))

    def reached() -> bool:
        if phase == "starting":
            out = busy / "stage.out"
            return out.is_file() and "importing" in out.read_text()
        return bool(list((busy / "out").glob(".result.txt.tmp-*")))

    deadline = time.monotonic() + 60
    while not reached() and time.monotonic() < deadline:
        time.sleep(0.1)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10 + import_seconds
    while not ended(stage):
        assert time.monotonic() < deadline, "the stage went on without its dvc"
        time.sleep(0.1)
    assert (busy / "stage.err").read_text() == (
        "busy: stopped: the dvc process that ran it is gone; start again with dvc repro\n")
    assert not (busy / "out").exists() or os.listdir(busy / "out") == []


@pytest.mark.slow
def test_kill_9_leaves_a_temporary_that_the_next_write_removes(busy):
    proc = start_busy(busy, stdout=subprocess.PIPE)
    wait_for(proc.stdout, "writing")
    proc.kill()
    proc.wait()
    (orphan,) = (busy / "out").iterdir()
    assert artifacts.TEMP_NAME.match(orphan.name)["pid"] == str(proc.pid)
    assert stat.S_IMODE(orphan.stat().st_mode) == 0o666 & ~current_umask()
    artifacts.write_text("done", busy / "out/result.txt")
    assert os.listdir(busy / "out") == ["result.txt"]


def ended(proc: psutil.Process) -> bool:
    """Exited (an exited process that no one has reaped yet is a zombie)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------ biaslab recover

def recover(repo) -> subprocess.CompletedProcess:
    return sh(ROOT, sys.executable, "-m", "biaslab", "recover", str(repo), check=False)


@pytest.mark.slow
def test_recover_stops_leftover_stages_and_removes_stale_locks_and_temporaries(busy):
    stage = start_busy(busy, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(stage.stdout, "writing")
    dead = dead_pid()
    (busy / ".dvc/tmp").mkdir(parents=True)
    (busy / ".dvc/tmp/rwlock").write_text(json.dumps(
        {"read": {}, "write": {str(busy / "data/x"): {"pid": 1, "cmd": "dvc repro"}}}))
    (busy / "data/prepared").mkdir(parents=True)
    orphan = busy / f"data/prepared/.pixels.npy.tmp-{dead}-0a1b2c3d"
    orphan.write_bytes(b"\0" * 1024)
    proc = recover(busy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stage.wait(timeout=5) == 128 + signal.SIGTERM  # stopped cleanly, not killed
    assert not (busy / ".dvc/tmp/rwlock").exists()
    assert temps(busy) == []
    assert "start again with `dvc repro`" in proc.stdout


@pytest.mark.slow
def test_recover_does_nothing_while_dvc_runs(busy):
    (busy / "bin").mkdir()
    (busy / "bin/dvc").write_text("import time\ntime.sleep(60)\n")  # looks like dvc to ps
    (busy / ".dvc/tmp").mkdir(parents=True)
    (busy / ".dvc/tmp/rwlock").write_text("{}")
    dvc = subprocess.Popen([sys.executable, str(busy / "bin/dvc"), "repro"], cwd=busy)
    try:
        time.sleep(0.5)
        proc = recover(busy)
    finally:
        dvc.kill()
        dvc.wait()
    assert proc.returncode == 1
    assert f"dvc is running in this repo: {dvc.pid}" in proc.stderr
    assert (busy / ".dvc/tmp/rwlock").exists()


@pytest.mark.slow
def test_recover_frees_dvc_from_the_lock_of_a_killed_container(tiny_repo, tmp_path):
    """In a container DVC runs as PID 1 (or another small PID): killed there, its rwlock
    entries name a PID that is alive for every later DVC (the host's init, the next container's
    DVC), which then fails with 'is busy' until the lock is removed."""
    repo = copy_repo(tiny_repo, tmp_path / "repo")
    lock = repo / ".dvc/tmp/rwlock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"read": {}, "write": {
        str(repo / "data/prepared/pixels.npy"): {"pid": 1, "cmd": "dvc repro"}}}))
    proc = sh(repo, "dvc", "repro", "prepare", check=False)
    assert proc.returncode != 0 and "is busy" in proc.stderr
    assert recover(repo).returncode == 0
    sh(repo, "dvc", "repro", "prepare")


# ------------------------------------------------------------------ end to end

def lock_of(repo) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def stage_processes(repo) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = proc.info["cmdline"] or []
        if "-m" in cmdline and proc.info["cwd"] == str(repo) and any(
                arg.startswith("stages.") for arg in cmdline):
            found.append(proc)
    return found


def repro_killed(repo, stage: str, delay: float, target: str) -> str:
    """`dvc repro`, SIGKILL ``delay`` s after it starts ``stage``: to its process group
    (dvc and the stage), to dvc alone, or to the stage alone. Returns dvc's output."""
    log = repo / "repro.log"
    with open(log, "w") as out:
        dvc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=repo_env(), stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while f"Running stage '{stage}'" not in log.read_text():
        assert dvc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    time.sleep(delay)
    try:
        if target == "group":
            os.killpg(dvc.pid, signal.SIGKILL)
        elif target == "dvc":
            dvc.kill()
        else:
            for child in psutil.Process(dvc.pid).children(recursive=True):
                child.kill()
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass  # it had ended by then
    dvc.wait(timeout=300)
    return log.read_text()


@pytest.mark.slow
def test_runs_killed_at_random_points_recover_to_the_artifacts_of_an_uninterrupted_run(
        tiny_repo, built_repo, tmp_path):
    seed = int(os.environ.get("BIASLAB_KILL_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    repo = copy_repo(tiny_repo, tmp_path / "repo")
    story = [f"BIASLAB_KILL_SEED={seed}"]
    for stage, target in (("prepare", "group"), ("train@none-0", "dvc"), ("evaluate", "stage")):
        delay = rng.uniform(0, 3)
        output = repro_killed(repo, stage, delay, target)
        story.append(f"SIGKILL to {target} {delay:.2f} s into {stage}:\n{output[-1500:]}")
        if target == "dvc":  # its stage notices within a second and stops by itself
            psutil.wait_procs(stage_processes(repo), timeout=10)
            assert stage_processes(repo) == [], "\n".join(story)
        proc = recover(repo)
        assert proc.returncode == 0, "\n".join(story) + proc.stdout + proc.stderr
    sh(repo, "dvc", "repro")
    print("\n\n".join(story))  # shown with -s, and with the failure
    assert lock_of(repo) == lock_of(built_repo[0]), "\n".join(story)
    assert temps(repo) == [] and sh(repo, "dvc", "status", "--quiet", check=False).returncode == 0
