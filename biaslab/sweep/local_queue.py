"""Watching DVC's local queue without ``dvc exp show``: what its state files say of a sweep.

``biaslab sweep`` (without ``--ray``) queues its experiments with ``dvc exp run --queue`` and
runs them with ``dvc queue start`` (DVC's Celery worker, one experiment at a time). It then
learns where each experiment stands from what the queue leaves on disk and in Git, all of it
cheap to read (a few milliseconds, against a second or more of CPU for a ``dvc exp show``,
which reads every experiment of the repository; polled, it took a core of a 2-core machine
from the experiments it waited for):

- queued: the experiment's entry in the queue's stash (``git log -g refs/exps/celery/stash``,
  messages ``commit: dvc-exp:REV:BASELINE:NAME``); the worker drops it when it takes the
  experiment;
- taken: the worker's info file of the experiment (``.dvc/tmp/exps/run/<stash rev>/<stash
  rev>.run``, JSON, its ``name`` and DVC's ``TaskStatus``), beside the process file of its
  ``dvc exp exec-run`` (``<stash rev>.json``: pid, return code) and its log (``.out``);
- ended: a success's Git ref (``refs/exps/<baseline[:2]>/<baseline[2:]>/NAME``), written when
  the worker collects it, before the info file says ``finished``; a failure's info file says
  ``failed`` (or ``finished`` with no ref: its process was killed);
- the worker itself: its process file (``.dvc/tmp/exps/celery/dvc-exp-worker-1.json``).

The command (:mod:`biaslab.cli.sweep_queue`) reads those into a :class:`Snapshot`; this module
says what they mean (:func:`state`) and what to do (:class:`Watch`): which experiments ended,
when to start the worker again, when to give up. Kept pure: time comes in as an argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# DVC's TaskStatus (dvc.repo.experiments.executor.base), by value, in lower case: an info file
# holds the number (mapped here, so that a look imports no DVC: a second of start-up)
TASK_STATUS = ("pending", "preparing", "running", "success", "failed", "canceled", "finished")
# the states of an experiment the worker took after which nothing more comes
TERMINAL = frozenset({"failed", "canceled", "finished"})
QUEUED, RUNNING, SUCCESS, FAILED, MISSING = "queued", "running", "success", "failed", "missing"
# what the edge puts in Ended.reason for a failure whose log says why
FROM_LOG = "log"
_STASH = re.compile(r"^commit: dvc-exp:[0-9a-f]+:[0-9a-f]+:(?P<name>[^:\s]*)")


@dataclass(frozen=True)
class Task:
    """An experiment the worker took: DVC's status of it (``TaskStatus`` name, lower case) and
    whether its ``dvc exp exec-run`` process is alive (not yet started: False)."""

    status: str
    alive: bool


@dataclass(frozen=True)
class Snapshot:
    """The queue at one moment: names in the stash (``queued``), the tasks the worker took (by
    name), the experiments' Git refs (name -> commit), whether the worker lives, and whether any
    experiment's process lives (``busy``: this sweep's or another's)."""

    queued: frozenset[str]
    tasks: Mapping[str, Task]
    refs: Mapping[str, str]
    worker: bool
    busy: bool


@dataclass(frozen=True)
class Ended:
    """An experiment of the sweep that ended: ``state`` success (``rev``: its commit) or failed
    (``reason``: :data:`FROM_LOG`, or the text itself), or missing."""

    name: str
    state: str
    rev: str | None = None
    reason: str = ""


def stash_names(reflog: str) -> list[str]:
    """The experiments' names in the queue's stash, from ``git log -g --format=%gs
    refs/exps/celery/stash`` (empty when the ref is absent: nothing queued)."""
    return [m["name"] for line in reflog.splitlines() if (m := _STASH.match(line.strip()))]


def exp_ref_prefix(baseline: str) -> str:
    """The folder of the Git refs of the experiments of commit ``baseline``, as DVC writes it."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/"


def exp_refs(listing: str, baseline: str) -> dict[str, str]:
    """Name -> commit of the experiments of ``baseline``, from ``git for-each-ref
    --format='%(objectname) %(refname)' PREFIX`` (:func:`exp_ref_prefix`)."""
    prefix, refs = exp_ref_prefix(baseline), {}
    for line in listing.splitlines():
        rev, _, ref = line.strip().partition(" ")
        if ref.startswith(prefix) and "/" not in ref[len(prefix):]:
            refs[ref[len(prefix):]] = rev
    return refs


def state(name: str, snap: Snapshot) -> str:
    """Where experiment ``name`` stands: success (its ref is there), failed (the worker is
    through with it, and no ref), running (taken), queued (in the stash) or missing (none of
    these: dropped from the stash a moment before the worker writes its info file, or removed
    from the queue)."""
    task = snap.tasks.get(name)
    if name in snap.refs:
        return SUCCESS
    if task is not None:
        return FAILED if task.status in TERMINAL else RUNNING
    return QUEUED if name in snap.queued else MISSING


@dataclass
class Watch:
    """What the waiting sweep does at each look at the queue (:meth:`look`).

    Parameters
    ----------
    names : the sweep's experiments.
    grace : seconds a sign of trouble must last before it counts (a worker not running, an
        experiment missing): the queue passes through such states for a moment.
    stall : seconds with no experiment of the sweep changing state and no experiment process
        alive after which the sweep stops with an error (a worker hung, or one that dies again).
    """

    names: Sequence[str]
    grace: float = 5.0
    stall: float = 180.0
    seen: dict[str, str] = field(default_factory=dict)
    progress: float | None = None
    restarted: float | None = None
    _trouble: dict[str, float] = field(default_factory=dict)

    def pending(self) -> list[str]:
        return [n for n in self.names if self.seen.get(n) not in (SUCCESS, FAILED, MISSING)]

    def look(self, snap: Snapshot, now: float) -> tuple[list[Ended], bool]:
        """The experiments that ended since the last look, and whether to start the worker.

        Raises ``ValueError`` once nothing has moved for :attr:`stall` seconds.
        """
        self.progress = now if self.progress is None else self.progress
        ended = []
        for name in self.pending():
            now_state = state(name, snap)
            end = self._ended(name, now_state, snap, now)
            if end is not None:
                ended.append(end)
                now_state = end.state
            elif now_state == MISSING:  # for a moment, most often: it keeps its last state
                now_state = self.seen.get(name, QUEUED)
            if now_state != self.seen.get(name):
                self.progress = now
            self.seen[name] = now_state
        if snap.busy:
            self.progress = now
        left = self.pending()
        # not while an experiment's process lives on without its worker: one at a time
        restart = self._lasted("worker", bool(left) and not snap.worker and not snap.busy,
                               now) and (self.restarted is None
                                         or now - self.restarted >= self.stall / 2)
        if restart:
            self.restarted = now
        elif left and now - self.progress >= self.stall:
            raise ValueError(self._stalled(left, snap, now))
        return ended, restart

    def _ended(self, name: str, now_state: str, snap: Snapshot, now: float) -> Ended | None:
        """``name``'s end, if this look shows it."""
        task = snap.tasks.get(name)
        # taken, its process gone, and no worker left to collect it: it would never end
        orphan = now_state == RUNNING and not snap.worker and not task.alive
        # missing while the worker cannot be setting it up: removed from the queue, or lost
        lost = now_state == MISSING and (not snap.worker or self._running(snap))
        if self._lasted(f"orphan:{name}", orphan, now):
            return Ended(name, FAILED, reason="the DVC queue worker stopped before it "
                         "collected this experiment")
        if self._lasted(f"missing:{name}", lost, now):
            return Ended(name, MISSING)
        if now_state == SUCCESS:
            return Ended(name, SUCCESS, rev=snap.refs[name])
        if now_state == FAILED:
            return Ended(name, FAILED, reason=FROM_LOG)
        return None

    def _running(self, snap: Snapshot) -> bool:
        """Another experiment of the sweep is the one the worker runs (it runs one at a time)."""
        return any(state(n, snap) == RUNNING for n in self.names)

    def _lasted(self, key: str, trouble: bool, now: float) -> bool:
        """Whether ``trouble`` has held for :attr:`grace` seconds, over the looks at ``key``."""
        if not trouble:
            self._trouble.pop(key, None)
            return False
        return now - self._trouble.setdefault(key, now) >= self.grace

    def _stalled(self, left: Iterable[str], snap: Snapshot, now: float) -> str:
        left = list(left)
        worker = ("is running but takes none of them" if snap.worker else
                  "is not running" + (" (started again, to no avail)" if self.restarted
                                      is not None else ""))
        return (f"no experiment of the sweep has moved for {now - self.progress:.0f} s: "
                f"{len(left)} left ({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}), "
                f"and DVC's queue worker {worker}; see dvc queue status, and its log "
                ".dvc/tmp/exps/celery/dvc-exp-worker-1.out")


def waiting(snap: Snapshot) -> list[str]:
    """Experiments of anyone in the queue: queued, or taken and not through (a live process)."""
    running = [n for n, t in snap.tasks.items() if t.status not in TERMINAL and t.alive]
    return sorted(snap.queued) + sorted(set(running) - snap.queued)
