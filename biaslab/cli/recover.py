"""Make the repo ready for the next `dvc repro` after a killed one (`make recover`).

A `dvc repro` stopped with Ctrl-C or `kill` (SIGTERM) ends cleanly: start again with `dvc repro`.
After SIGKILL (`kill -9`, the OOM killer, `docker kill`, a container stopped without an init)
three things can be left behind, which this removes:

1. the stage that DVC was running, still running on its own, writing outputs that the next
   `dvc repro` writes too (stages stop by themselves within a second when DVC is gone; one run
   by hand, or a stuck one, is stopped here: SIGTERM, then SIGKILL after 10 s);
2. DVC's stale locks in .dvc/tmp: DVC forgets the lock of a dead process by itself, except when
   its PID is alive again, which is always the case after a container (there DVC runs as PID 1 or
   another small PID that some process of the host or of the next container has): every DVC
   command then fails with "... is busy, it is being blocked by: (PID 1): dvc repro";
3. the temporary files of killed writers (.NAME.tmp-PID-RANDOM, GBs for pixels.npy).

Nothing is done while a dvc process runs in this repo (it is named; stop it or let it end).
Exit status 0 when the repo is ready, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psutil

from biaslab import artifacts

DVC_LOCKS = (".dvc/tmp/rwlock", ".dvc/tmp/rwlock.lock", ".dvc/tmp/lock")
SKIP_DIRS = {".git", ".dvc", ".venv", ".uv", "node_modules", "__pycache__"}
EXAMPLES = """\
  biaslab recover              # this repository (the current folder)
  biaslab recover ~/biaslab    # another clone
  make recover
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", nargs="?", default=".", type=Path,
                        help="the repository's root (default: the current folder)")


def run(args) -> int:
    return recover(args.root.resolve())


def in_repo(proc: psutil.Process, root: Path) -> bool:
    try:
        return Path(proc.cwd()).is_relative_to(root)
    except (psutil.Error, OSError):  # gone, or another user's
        return False


def is_dvc(cmdline: list[str]) -> bool:
    """``dvc ...`` as a script (python .../bin/dvc), an executable or ``python -m dvc``."""
    head = cmdline[:3]
    return any(Path(arg).name == "dvc" for arg in head[:2]) or head[1:3] == ["-m", "dvc"]


def is_stage(cmdline: list[str]) -> bool:
    """``python -m stages.NAME`` (run by DVC, torchrun or by hand), and its forked workers."""
    return any(arg == "-m" and module.startswith("stages.")
               for arg, module in zip(cmdline, cmdline[1:], strict=False))


def processes(root: Path, kind) -> list[psutil.Process]:
    ours = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.pid not in ours and kind(cmdline) and in_repo(proc, root):
            found.append(proc)
    return found


def stop(procs: list[psutil.Process], timeout: float = 10.0) -> None:
    for proc in procs:
        print(f"recover: stopping {proc.pid}: {' '.join(proc.info['cmdline'])[:120]}")
        proc.terminate()  # a stage ends on SIGTERM with its one line, removing partial output
    alive = _wait(procs, timeout)
    for proc in alive:
        print(f"recover: {proc.pid} still running after {timeout:g} s: SIGKILL")
        proc.kill()
    _wait(alive, timeout)


def _wait(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``procs`` still running after ``timeout`` s (an exited one that its parent has
    not reaped yet, a zombie, has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def temp_files(root: Path) -> list[Path]:
    """Temporaries whose writer is gone, or is no process of this repo (its PID reused)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in names:
            match = artifacts.TEMP_NAME.match(name)
            if match is None:
                continue
            try:
                writer = psutil.Process(int(match["pid"]))
            except psutil.Error:  # gone
                writer = None
            if writer is None or not in_repo(writer, root):
                found.append(Path(folder, name))
    return sorted(found)


def recover(root: Path) -> int:
    running = processes(root, is_dvc)
    if running:
        for proc in running:
            print(f"recover: dvc is running in this repo: {proc.pid}: "
                  f"{' '.join(proc.info['cmdline'])[:120]}", file=sys.stderr)
        print("recover: nothing done; let it end, or stop it (kill PID), then run "
              "`biaslab recover` again", file=sys.stderr)
        return 1
    stop(processes(root, is_stage))
    for name in DVC_LOCKS:
        if (root / name).exists():
            (root / name).unlink()
            print(f"recover: removed DVC's lock {name}")
    freed = 0
    for path in temp_files(root):
        freed += path.stat().st_size
        path.unlink()
        print(f"recover: removed {path.relative_to(root)}")
    print(f"recover: ready ({freed / 2**20:.1f} MiB freed); start again with `dvc repro`")
    return 0

