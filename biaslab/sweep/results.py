"""An experiment's results, read once from its Git commit: one reader for both drivers.

Both ways of running a sweep end an experiment the same way: DVC commits its outputs under the
experiment's Git ref (``refs/exps/<baseline>/<name>``). DVC's queue writes that ref in this
repository when the experiment is collected; a Ray task pushes it to the Git remote, and the
driver fetches it. Either driver then reads the headline (``metrics/fairness.json``) and
``metrics/grid.csv`` from that commit (``git show REV:PATH``), once, as the experiment ends:
no ``dvc exp show``, which reads every experiment of the repository each time.

Kept pure: the caller gives the files' text (a function of the path), this returns the outcome,
the grid and the reason of a failure (:class:`Result`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from biaslab.sweep.table import FAILED, SUCCESS, Outcome, failure_reason

UNREADABLE = "unreadable in the experiment's commit: "


@dataclass(frozen=True)
class Result:
    """What the sweep keeps of one experiment: its outcome, its grid.csv (a success only) and
    why it failed (a failure only)."""

    outcome: Outcome
    grid: pd.DataFrame | None = None
    error: str | None = None


def from_commit(rev: str, show: Callable[[str], str], *, headline_file: str,
                grid_file: str) -> Result:
    """The result of the experiment whose commit is ``rev``.

    Parameters
    ----------
    rev : the experiment's commit (what its Git ref points to).
    show : the text of a file of that commit, given its path (``git show REV:PATH``); raises
        ``ValueError`` when the commit lacks it.
    headline_file, grid_file : the paths of the headline figures and of grid.csv.

    Returns
    -------
    A success with the headline and the grid; a failure, with the reason, when either file is
    missing or unreadable or the headline holds no figures (a success whose figures cannot be
    read is no success).
    """
    try:
        headline = json.loads(show(headline_file))
        if not isinstance(headline, dict) or not headline:
            raise ValueError(f"{headline_file}: no headline figures")
        grid = pd.read_csv(io.StringIO(show(grid_file)))
    except ValueError as exc:  # json's and pandas' parser errors are ValueErrors
        return Result(Outcome(FAILED, rev), error=f"{UNREADABLE}{exc}")
    return Result(Outcome(SUCCESS, rev, headline), grid)


def failed(*, log: str | None = None, error: str = "failed", rev: str | None = None) -> Result:
    """A failed experiment: the error line of its ``log`` when there is one, else ``error``."""
    reason = failure_reason(log) if log and log.strip() else error
    return Result(Outcome(FAILED, rev), error=reason)


def split(results: Mapping[str, Result]) -> tuple[dict[str, Outcome], dict[str, pd.DataFrame],
                                                  dict[str, str]]:
    """The outcomes, grids and errors of ``results`` (by name), as
    :func:`biaslab.sweep.table.sweep_table` takes them."""
    outcomes = {name: r.outcome for name, r in results.items()}
    grids = {name: r.grid for name, r in results.items() if r.grid is not None}
    errors = {name: r.error for name, r in results.items() if r.error}
    return outcomes, grids, errors
