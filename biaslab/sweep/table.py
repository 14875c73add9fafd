"""The sweep: one DVC experiment per (value, training seed) of a param, read back as a table.

``biaslab sweep`` (:mod:`biaslab.cli.sweep`) queues the experiments with ``dvc exp run
--queue``, runs them with ``dvc queue start`` (or as Ray tasks) and reads each one back from its
Git commit as it ends (:mod:`biaslab.sweep.results`). This module holds what needs no DVC: the
plan (the ``-S`` settings of each experiment), the outcome of each experiment and the table of
results (``metrics/sweep.csv``).

Why a failed experiment has no figures: ``dvc exp show`` shows one with the metrics of the
commit it was queued from (stale); the sweep reads figures from a successful experiment's own
commit only. A failed one's rows carry ``status = failed`` and the reason, never a figure.

The table's figure is :mod:`biaslab.sweep.figure`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from ruamel.yaml import YAML

# Not a key of params.yaml: the bias strength k, p0 = 0.5 - k and p1 = 0.5 + k (the seed
# study's p0/p1 = 0.4/0.6 is k = 0.1; k = 0 is no bias, k = 0.5 is S = the label).
BIAS_STRENGTH = "bias_strength"
# the second axis: every value is run once per training seed, each experiment training one
# (train.seeds=[S]), so that experiments run one at a time and a failure loses one seed only
SEED_KEY = "train.seeds"
DEFAULT_PARAM = BIAS_STRENGTH
DEFAULT_VALUES = ("0", "0.1", "0.2", "0.3", "0.4", "0.5")
DEFAULT_SEEDS = (0, 1)
SUCCESS, FAILED = "success", "failed"
# what each experiment runs: the pipeline up to evaluate, whose grid.csv the sweep reads (not
# explain nor report: a third of an experiment's time on the default data, for no figure)
TARGETS = ("evaluate",)
ID_COLUMNS = ["param", "value", "seed", "scheme", "method", "status", "experiment"]
# DI / the test set's base-rate DI (what a perfect classifier scores): taken from grid.csv
# whether or not fairness.json has it
EXCESS_DI = "excess_disparate_impact"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # a git ref component, as DVC names need


@dataclass(frozen=True)
class Experiment:
    """One experiment of the sweep: its DVC name, swept value, seed and ``-S`` settings."""

    name: str
    value: float | int | str
    seed: int
    settings: tuple[str, ...]  # "key=value", one ``-S`` each


@dataclass(frozen=True)
class Outcome:
    """How one experiment ended.

    ``state``: success, failed, or missing (no longer in DVC's queue, never ended); ``rev``:
    its commit; ``headline`` (scheme -> method -> figures): a success's only.
    """

    state: str
    rev: str | None = None
    headline: dict | None = None


def as_value(text: str) -> float | int | str:
    """A swept value as a number when it reads as one (int first), else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def bias_settings(k: float) -> tuple[str, str]:
    """``bias.p0=0.5-k`` and ``bias.p1=0.5+k`` (rounded: 0.5 - 0.4 is 0.09999999999999998)."""
    return f"bias.p0={round(0.5 - k, 10)!r}", f"bias.p1={round(0.5 + k, 10)!r}"


def plan(param: str, values: Sequence[str], seeds: Sequence[int], *, prefix: str,
         fixed: Sequence[str] = (), params: Mapping | None = None) -> list[Experiment]:
    """The experiments of a sweep of ``param`` over ``values`` x ``seeds``, in run order.

    Parameters
    ----------
    param : a params.yaml key (``bias.p0``), or :data:`BIAS_STRENGTH`, which sets p0 and p1
        together.
    values : the values as given on the command line (passed to ``-S`` as they are).
    seeds : the training seeds, the second axis: each experiment trains one,
        ``train.seeds=[SEED]`` (:data:`SEED_KEY`).
    prefix : the experiments' names start with it: ``PREFIX-v<i>-s<seed>``.
    fixed : ``key=value`` settings of every experiment (e.g. ``train.epochs=5``).
    params : params.yaml; a setting of a key it lacks is written ``+key=value``, as
        ``dvc exp run -S`` needs to add one (``split.train_composition.share`` to ``{}``).
    """
    key = param.lstrip("+")
    _check(param, values, seeds, fixed)
    if not _NAME.match(prefix):
        raise ValueError(f"sweep name prefix {prefix!r}: letters, digits, - and _ only")
    experiments = []
    for i, text in enumerate(values):
        value = as_value(text)
        if key == BIAS_STRENGTH:
            if isinstance(value, str) or not 0 <= value <= 0.5:
                raise ValueError(f"VALUES: bias strength {text!r}: a number from 0 to 0.5 "
                                 "(p0 = 0.5 - k, p1 = 0.5 + k)")
            settings = bias_settings(value)
        else:
            settings = (f"{param}={text}",)
        for seed in seeds:
            own = (*settings, f"{SEED_KEY}=[{seed}]", *fixed)
            experiments.append(Experiment(f"{prefix}-v{i}-s{seed}", value, seed,
                                          tuple(_mark_new(s, params) for s in own)))
    return experiments


def _mark_new(setting: str, params: Mapping | None) -> str:
    """``+key=value`` when ``params`` lacks the key (DVC refuses to add one without the +)."""
    if params is None or setting[:1] in "+~":
        return setting
    node = params
    for part in setting.partition("=")[0].split("."):
        if not isinstance(node, Mapping) or part not in node:
            return f"+{setting}"
        node = node[part]
    return setting


def applied(params: Mapping, settings: Sequence[str]) -> dict:
    """``params`` with ``key=value`` settings applied as ``dvc exp run -S`` applies them.

    Values are read as YAML 1.2, as DVC reads params.yaml; ``+key`` adds a key, ``~key``
    removes one. Validating the result (biaslab.config) finds a bad setting before any
    experiment runs.
    """
    out = copy.deepcopy(dict(params))
    for setting in settings:
        key, _, text = setting.partition("=")
        *parents, last = key.lstrip("+~").split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if key.startswith("~"):
            node.pop(last, None)
        else:
            node[last] = YAML(typ="safe").load(text) if text.strip() else None
    return out


def _check(param: str, values: Sequence[str], seeds: Sequence[int],
           fixed: Sequence[str]) -> None:
    """The sweep's own arguments (the settings' values are params.yaml's to check)."""
    key = param.lstrip("+")
    if not key or "=" in key or any(c.isspace() for c in key):
        raise ValueError(f"SWEEP: {param!r} is not a params.yaml key (e.g. bias.p0) nor "
                         f"{BIAS_STRENGTH}")
    if key == SEED_KEY:
        raise ValueError(f"SWEEP: {SEED_KEY} is the seed axis of every sweep; give its values "
                         "as SEEDS")
    _check_unique("VALUES", values)
    _check_unique("SEEDS", seeds)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"SEEDS: {list(seeds)}: whole numbers >= 0 only")
    swept = {"bias.p0", "bias.p1"} if key == BIAS_STRENGTH else {key}
    for setting in fixed:
        fixed_key = setting.partition("=")[0].lstrip("+~")
        if "=" not in setting or not fixed_key:
            raise ValueError(f"SWEEP_SET: {setting!r} is not key=value")
        if fixed_key in swept | {SEED_KEY}:
            raise ValueError(f"SWEEP_SET: {setting!r} sets a key the sweep sets "
                             f"({', '.join(sorted(swept | {SEED_KEY}))})")


def _check_unique(name: str, items: Sequence) -> None:
    if not items:
        raise ValueError(f"{name}: empty; give at least one")
    twice = sorted({str(x) for x in items if list(items).count(x) > 1})
    if twice:
        raise ValueError(f"{name}: {', '.join(twice)} given more than once")


def failure_reason(log: str) -> str:
    """The line of an experiment's log that says why it failed.

    A stage's own error line (``STAGE: error: ...``) first, else DVC's last ``ERROR:`` line,
    else the last line of the log.
    """
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return error_line(log) or (lines[-1] if lines else "failed, with no log")


def error_line(log: str) -> str | None:
    """A stage's last error line (``STAGE: error: ...``) in ``log``, else DVC's last ``ERROR:``
    line, else None."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for pattern in (r"^[\w@.-]+: error: ", r"^ERROR: "):
        hits = [line for line in lines if re.match(pattern, line)]
        if hits:
            return hits[-1]
    return None


def _reason(name: str, outcome: Outcome) -> str:
    return {
        FAILED: f"failed (dvc queue logs {name})",
        "missing": "left DVC's queue without a result (removed?)",
        SUCCESS: "no metrics/grid.csv in the experiment's commit",
    }.get(outcome.state, f"still {outcome.state} when the sweep was collected")


def sweep_table(experiments: Sequence[Experiment], outcomes: Mapping[str, Outcome],
                grids: Mapping[str, pd.DataFrame], *, param: str,
                errors: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per experiment x scheme x method; one row per failed experiment.

    Parameters
    ----------
    experiments, outcomes : the plan, and how each experiment ended.
    grids : grid.csv of each successful experiment (by name), from its commit: the figures and
        their intervals, at full precision, one row per scheme x method.
    errors : why an experiment failed (its log's error line).

    Returns
    -------
    ``param``, ``value``, ``seed``, ``scheme``, ``method``, ``status`` (success | failed),
    ``experiment`` (the DVC name), the figures of :data:`FIGURES` and the gaps of :data:`GAPS`
    that grid.csv has, each with ``FIGURE_lo`` and ``FIGURE_hi``, ``degenerate`` and
    ``recommended``, grid.csv's reasons for missing figures (``warning``, ``insufficient``,
    ``ATTR.insufficient``, ...) and ``error``. A failed experiment's row has no figure, whatever
    DVC shows for it.
    """
    errors = errors or {}
    ok = {e.name: grids[e.name] for e in experiments
          if outcomes.get(e.name, Outcome("missing")).state == SUCCESS and e.name in grids}
    figures = _figures(ok)
    reasons = list(dict.fromkeys(c for g in ok.values() for c in g.columns
                                 if c in FLAGS or c.split(".")[-1] == "insufficient"))
    rows = []
    for exp in experiments:
        ids = {"param": param.removeprefix("+"), "value": exp.value, "seed": exp.seed,
               "experiment": exp.name}
        if exp.name not in ok:
            outcome = outcomes.get(exp.name, Outcome("missing"))
            rows.append({**ids, "status": FAILED,
                         "error": errors.get(exp.name) or _reason(exp.name, outcome)})
            continue
        for cells in ok[exp.name].to_dict("records"):
            pair = {"scheme": cells["scheme"], "method": cells["method"]}
            row = {**ids, **pair, "status": SUCCESS}
            for figure in figures:
                row[figure] = cells.get(figure)
                row |= {f"{figure}{end}": cells[f"{figure}{end}"] for end in ("_lo", "_hi")
                        if f"{figure}{end}" in cells}
            rows.append(row | {c: cells.get(c) for c in reasons})
    table = pd.DataFrame(rows)
    columns = [*ID_COLUMNS, *[c for f in figures for c in (f, f"{f}_lo", f"{f}_hi")
                              if c in table.columns], *reasons, "error"]
    return table.reindex(columns=columns)


# the figures of sweep.csv: grid.csv's overall figures and, for each single attribute (not the
# intersections, not the shifted set's), these gaps, each with its interval
FIGURES = ("accuracy", "balanced_accuracy", "auc", "flip_rate", "shifted.accuracy",
           "shifted.balanced_accuracy")
GAPS = ("disparate_impact", EXCESS_DI, "statistical_parity_difference",
        "equal_opportunity_difference", "equalized_odds_difference",
        "worst_group_balanced_accuracy")


FLAGS = ("degenerate", "recommended", "warning")  # grid.csv's columns carried as they are


def _figures(grids: Mapping[str, pd.DataFrame]) -> list[str]:
    """The figures of :data:`FIGURES` and the gaps of :data:`GAPS` that the experiments' grids
    have, with their intervals, in grid.csv's order."""
    def wanted(column: str) -> bool:
        attr, _, gap = column.partition(".")
        return column in FIGURES or (gap in GAPS and attr != "shifted" and "&" not in attr)

    return list(dict.fromkeys(c for grid in grids.values() for c in grid.columns
                              if wanted(c) and f"{c}_lo" in grid.columns))
