"""Thin DVC stage modules: read params and inputs, call biaslab, write outputs atomically.

Every stage ends through :func:`run`: a bad input or param, or a stopping signal (Ctrl-C,
``kill``, ``docker stop``, a closed terminal), ends it with one line and no traceback.
"""

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from biaslab.cli.warning_lines import warning_lines

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RESTART = "start again with dvc repro"


class Interrupted(KeyboardInterrupt):
    """Raised in the stage's main thread by a stopping signal.

    A KeyboardInterrupt, so that code that stops quietly on Ctrl-C does so on SIGTERM as well;
    the atomic writers' ``finally`` removes the partial output on the way out.
    """

    def __init__(self, signum: int, why: str = ""):
        super().__init__(signum)
        self.signum = signum
        self.why = why or f"interrupted ({signal.Signals(signum).name})"


def run(main: Callable[[], None], name: str) -> None:
    """Run a stage's ``main``; a bad input or param ends it with one clear line, not a traceback.

    Python warnings are printed as ``NAME: warning: MESSAGE``
    (:mod:`biaslab.cli.warning_lines`).
    A stopping signal ends it with ``NAME: interrupted (SIGINT); start again with dvc repro``
    and exit status 128 + the signal's number (130 for SIGINT, 143 for SIGTERM, 129 for
    SIGHUP). Unexpected errors (bugs) keep their traceback.
    """
    try:
        # inside the try: a DVC already gone when the stage gets here stops it at once
        _raise_on_signals()
        with warning_lines(name):  # the library's warnings as NAME: warning: lines
            main()
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as exc:
        print(f"{name}: {exc.why}; {RESTART}", file=sys.stderr)
        sys.exit(128 + exc.signum)


_orphaned = threading.Event()


def _raise_on_signals() -> None:
    main_pid = os.getpid()

    def stop(signum, frame):
        if os.getpid() != main_pid:  # a forked worker (prepare's pool): its parent reports
            os._exit(128 + signum)
        why = "stopped: the dvc process that ran it is gone" if _orphaned.is_set() else ""
        raise Interrupted(signum, why)

    _handle(stop)
    if "DVC_STAGE" in os.environ:  # set by DVC for the stages it runs
        threading.Thread(target=_watch_parent, args=(_PARENT,), daemon=True).start()


def _handle(handler) -> None:
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup, or a shell's background job
            signal.signal(signum, handler)


def _watch_parent(parent: int, every: float = 1.0) -> None:
    """SIGTERM this process once ``parent`` (DVC) is gone.

    A `dvc repro` killed with SIGKILL leaves the stage it runs alive; on its own, the stage would
    go on writing its outputs while the next `dvc repro` runs it again.
    """
    while os.getppid() == parent:
        time.sleep(every)
    _orphaned.set()
    os.kill(os.getpid(), signal.SIGTERM)


def _stage_of_command_line() -> str | None:
    """NAME when this process is ``python -m stages.NAME`` (run by DVC, torchrun or by hand)."""
    argv = sys.orig_argv
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1].startswith("stages."):
        return argv[argv.index("-m") + 1].removeprefix("stages.")
    return None


# The parent (DVC) as it was when the stage started: `python -m stages.NAME` imports this package
# before the stage's own module, whose imports (torch, pandas) take seconds. Reading it later,
# in `run`, would take a DVC killed meanwhile for the process that adopted the orphan (init or
# a subreaper), and the stage would never notice that DVC is gone.
_PARENT = os.getppid()

# Importing torch and pandas takes seconds, before the stage's module reaches `run`: a signal
# then has nothing to clean up, and ends the process with the same one line.
if (_stage := _stage_of_command_line()) is not None:
    def _exit_now(signum, frame, name=_stage):
        print(f"{name}: interrupted ({signal.Signals(signum).name}) while starting; {RESTART}",
              file=sys.stderr, flush=True)
        os._exit(128 + signum)

    _handle(_exit_now)


def present_columns(columns, table, stage: str, without_s: str) -> list[str]:
    """``columns`` less ``s`` when the table has none (``bias.kind: none`` draws no s).

    Dropping ``s`` is said on stderr as ``STAGE: note: ...: WITHOUT_S``; other missing columns
    are left for the library to report.
    """
    columns = list(columns)
    if "s" in columns and "s" not in table.columns:
        columns.remove("s")
        print(f"{stage}: note: no injected bias s (bias.kind: none): {without_s}",
              file=sys.stderr)
    return columns
