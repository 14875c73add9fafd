"""An audit as a DVC project: the text of its ``dvc.yaml`` and ``params.yaml``.

``biaslab audit --init DIR`` writes them (:mod:`biaslab.cli.audit_project`). The stages are the
pipeline's last three, over the user's predictions table: ``postprocess`` (the table checked,
the threshold methods fitted on its val rows), ``evaluate`` (the grid, with intervals and
p-values) and ``report`` (the verdict of ``report.criteria`` and the page). Each runs one step
of the installed ``biaslab audit`` (``--step``) and depends on the params it reads only, so that
``dvc exp run -S evaluate.n_boot=2000`` reruns evaluate and report, and a change of
``report.criteria`` reruns the report alone.

``params.yaml`` holds the ``postprocess``, ``evaluate``, ``report`` and ``audit`` sections,
every key with its value and, above it, its description from the config models (the parameter
reference's text). ``audit.attributes`` is left out: the audit tabulates ``evaluate.groups``.
"""

from __future__ import annotations

import shlex
import textwrap
from collections.abc import Sequence

import yaml
from pydantic import BaseModel

SECTIONS = ("postprocess", "evaluate", "report", "audit")
LEFT_OUT = {"audit": ("attributes",)}  # set from evaluate.groups by every step
WIDTH = 96
# the files the steps hand each other, relative to the project's root (the steps' --out)
DATA = ("data/attributes.parquet", "data/models.parquet", "data/decisions.parquet")
THRESHOLDS = "metrics/thresholds.json"
GRID, GROUPS, SEEDS = "metrics/grid.csv", "metrics/groups.csv", "metrics/seeds.csv"
FAIRNESS, VERDICT, REPORT = "metrics/fairness.json", "metrics/verdict.json", "report.html"
# the params each stage reads: its dependencies (dvc.yaml's params)
PARAMS = {
    "postprocess": ["postprocess", "evaluate.groups"],
    "evaluate": ["evaluate"],
    "report": ["report", "audit", "evaluate.groups", "evaluate.pareto_gap",
               "evaluate.resample", "evaluate.max_accuracy_loss"],
}


def flow(value) -> str:
    """``value`` as YAML flow text on one line: ``[fixed, youden]``, ``{figure: x, max: 0.1}``.

    A string is written bare when YAML reads it back as that string, quoted otherwise
    (``'0.5'``, ``'yes'``, ``'a: b'``).
    """
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    plain = text and text.strip() == text and not any(c in text for c in ",[]{}#'\"")
    if plain and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("'", "''") + "'"


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - len(indent) - 2, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# ", break_on_hyphens=False)


def _values(section: BaseModel) -> dict:
    """The section's keys and values; a list of models (``report.criteria``) as the keys each
    item sets beyond its defaults, as params.yaml writes them."""
    out = {}
    for key in type(section).model_fields:
        value = getattr(section, key)
        if isinstance(value, list | tuple) and value and isinstance(value[0], BaseModel):
            value = [item.model_dump(exclude_defaults=True) for item in value]
        elif isinstance(value, BaseModel):
            value = value.model_dump()
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def params_text(params: BaseModel, source: str) -> str:
    """The project's params.yaml: :data:`SECTIONS` of ``params`` (a
    :class:`biaslab.config.Params`), each key commented with its description."""
    lines = [f"# The settings of the audit of {source} (biaslab audit --init): the sections",
             "# of biaslab's params.yaml that the audit reads (docs: the parameter reference).",
             "# Change one and run `dvc repro`, or try one with `dvc exp run -S KEY=VALUE`."]
    fields = type(params).model_fields
    for name in SECTIONS:
        section = getattr(params, name)
        lines += ["", *_comment(fields[name].description or name, ""), f"{name}:"]
        described = type(section).model_fields
        for key, value in _values(section).items():
            if key in LEFT_OUT.get(name, ()):
                continue
            lines += _comment(described[key].description or key, "  ")
            if isinstance(value, list) and value and isinstance(value[0], dict):
                lines += [f"  {key}:", *[f"    - {flow(item)}" for item in value]]
            else:
                lines.append(f"  {key}: {flow(value)}")
    return "\n".join(lines) + "\n"


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _outs(paths: Sequence[str], cache: bool = False) -> str:
    """A stage's outputs, one a line. Uncached ones are kept in git (small files to read and
    diff), and persist: a failed run leaves the last good ones (the steps replace them
    atomically)."""
    keep = "" if cache else ": {cache: false, persist: true}"
    return "\n".join(f"      - {p}{keep}" for p in paths)


def dvc_yaml(source: str, options: Sequence[str]) -> str:
    """The project's dvc.yaml. ``source``: the predictions table, as the project's stages
    reach it (relative to the project, or absolute); ``options``: the table's options
    (``--label``, ``--score``, ``--split``, ...) for the postprocess step's command."""
    common = shlex.join(["--predictions", source, "--params", "params.yaml", "--out", "."])
    command = {name: flow(f"biaslab audit --step {name} {common}") for name in PARAMS}
    command["postprocess"] = flow(f"biaslab audit --step postprocess {common} "
                                  + shlex.join(options))
    return f"""\
# The audit of {source} as a DVC project, written by `biaslab audit --init`: the pipeline's
# postprocess -> evaluate -> report over that table. `dvc repro` runs it; `dvc exp run -S
# evaluate.n_boot=2000` reruns evaluate and report; a change of report.criteria reruns the
# report alone. The stages run the installed biaslab: after upgrading it, `dvc repro -f`.
stages:
  # the table checked (every bad input named), the threshold methods fitted on its val rows
  postprocess:
    cmd: {command["postprocess"]}
    deps: [{flow(source)}]
    params: {_list(PARAMS["postprocess"])}
    outs:
{_outs(DATA, cache=True)}
{_outs([THRESHOLDS])}

  # the grid of every (model, method): intervals, gaps, p-values, the pair recommended
  evaluate:
    cmd: {command["evaluate"]}
    deps: {_list([*DATA, THRESHOLDS])}
    params: {_list(PARAMS["evaluate"])}
    outs:
{_outs([GRID, GROUPS, SEEDS])}
    metrics:
{_outs([FAIRNESS])}

  # the verdict of report.criteria and the report page
  report:
    cmd: {command["report"]}
    deps: {_list([*DATA, GRID, GROUPS])}
    params: {_list(PARAMS["report"])}
    outs:
{_outs([REPORT])}
    metrics:
{_outs([VERDICT])}
"""
