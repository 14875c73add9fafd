"""``biaslab audit --init DIR``: the audit as a DVC project; ``--step``: one of its stages.

``--init`` checks the table and the settings as ``biaslab audit`` does, then writes DIR's
``dvc.yaml`` and ``params.yaml`` (:mod:`biaslab.audit.project`), after ``git init`` and
``dvc init`` when DIR is no DVC project yet; it refuses to overwrite either file without
``--force``. ``--step postprocess|evaluate|report`` is what the project's stages run, from its
root (``--out .``): each reads the files of the step before and writes its own, atomically.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from biaslab.audit import project
from biaslab.cli.audit import checked_table, data_audit, settings
from biaslab.cli.warning_lines import warning_lines


def run_project(args) -> int:
    """``--init`` or ``--step``: the one that was given."""
    if args.init and args.step:
        raise ValueError("--init writes a project and --step runs one of its stages: give one")
    if getattr(args, "model_file", None) or not args.predictions:
        raise ValueError("--init and --step audit a predictions table: give --predictions FILE "
                         "(a model file's scores: audit it with --out, or write them to a table)")
    if args.init:
        return init(args)
    if not args.out:
        raise ValueError(f"--step {args.step}: give --out, the project's root (its dvc.yaml "
                         "runs the steps with --out .)")
    with warning_lines(f"audit {args.step}"):
        return STEPS[args.step](args)


def table_options(args) -> list[str]:
    """The options naming the table's columns, as the user gave them (for the stage's cmd)."""
    out = ["--label", args.label]
    out += ["--decision", args.decision] if args.decision else ["--score", args.score or "score"]
    out += ["--logits"] if args.logits else []
    for option in ("split", "patient", "id", "model"):
        if getattr(args, option):
            out += [f"--{option}", getattr(args, option)]
    for spec in args.seeds_of:
        out += ["--seeds-of", spec]
    return out


def init(args) -> int:
    """Write the project in ``args.init``: every check first, then git/dvc init, the files."""
    root = Path(args.init)
    params = settings(args)
    predictions, _, _ = checked_table(args, params)  # a bad table: here, not at dvc repro
    files = {root / "dvc.yaml": None, root / "params.yaml": None}
    there = [str(f) for f in files if f.exists()]
    if there and not args.force:
        raise ValueError(f"--init {args.init}: {', '.join(there)} already exist(s); add --force "
                         "to overwrite, or give another folder")
    table = Path(args.predictions).resolve()
    # inside the project: a path that moves with it; outside: where the file is
    source = (table.relative_to(root.resolve()).as_posix() if table.is_relative_to(root.resolve())
              else str(table))
    files[root / "dvc.yaml"] = project.dvc_yaml(source, table_options(args))
    files[root / "params.yaml"] = project.params_text(params, source)
    root.mkdir(parents=True, exist_ok=True)
    _init_repositories(root)
    from biaslab import artifacts

    for path, text in files.items():
        artifacts.write_text(text, path)
    models = sum(len(m) for m in predictions.recipes.values())
    print(f"audit: a DVC project in {root} (dvc.yaml, params.yaml) auditing {models} model(s) "
          f"of {source}; run it with: cd {shlex.quote(str(root))} && dvc repro")
    return 0


def _init_repositories(root: Path) -> None:
    """``git init`` where no git repository holds ``root``, then ``dvc init`` (``--subdir``
    within a larger repository) where ``root`` is no DVC project yet."""
    if (root / ".dvc").is_dir():
        return
    top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True)
    if top.returncode != 0:
        _call(["git", "init", "-q"], root)
    subdir = top.returncode == 0 and Path(top.stdout.strip()).resolve() != root.resolve()
    _call([sys.executable, "-m", "dvc", "init", "-q", *(["--subdir"] if subdir else [])], root)


def _call(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise ValueError(f"--init: `{shlex.join(command)}` in {cwd} failed"
                         + (f": {said[-1]}" if said else ""))


# ---- the stages ------------------------------------------------------------------------------

def _postprocess(args) -> int:
    from biaslab import artifacts
    from biaslab.audit.run import decide_section
    from biaslab.audit.store import flatten

    out, params = Path(args.out), settings(args)
    predictions, no_val, _ = checked_table(args, params)
    decisions, fitted = decide_section(predictions, params.postprocess.model_dump(),
                                       no_val=no_val)
    attributes, models, decided = (out / p for p in project.DATA)
    artifacts.write_parquet(predictions.attributes, attributes)
    artifacts.write_parquet(flatten(predictions.recipes), models)
    artifacts.write_parquet(flatten(decisions), decided)
    artifacts.write_json(fitted, out / project.THRESHOLDS)
    n = sum(len(m) for m in predictions.recipes.values())
    print(f"audit postprocess: {n} model(s) in {len(predictions.recipes)} recipe(s), "
          f"{len(predictions.attributes)} images; methods {params.postprocess.methods} -> "
          f"{out / 'data'}")
    return 0


def _inputs(args):
    """The checked table and the decisions, as postprocess wrote them."""
    import pandas as pd

    from biaslab.audit.store import nest, predictions_of

    out = Path(args.out)
    attributes, models, decided = (pd.read_parquet(out / p) for p in project.DATA)
    return predictions_of(attributes, models, args.predictions), nest(decided)


def _evaluate(args) -> int:
    from biaslab import artifacts
    from biaslab.audit.run import evaluate, evaluation_warnings, gap_of
    from biaslab.fairness.headline import headline, summary_line

    out, params = Path(args.out), settings(args)
    options = params.evaluate.model_dump()
    groups = list(options.pop("groups"))
    predictions, decisions = _inputs(args)
    fitted = artifacts.read_json(out / project.THRESHOLDS)
    evaluation, grid = evaluate(predictions, decisions, fitted, groups, **options)
    artifacts.write_csv(grid, out / project.GRID)
    artifacts.write_csv(evaluation.per_group, out / project.GROUPS)
    artifacts.write_csv(evaluation.per_seed, out / project.SEEDS)
    artifacts.write_json(headline(grid, groups), out / project.FAIRNESS)
    gap = gap_of(groups, options)
    for line in evaluation_warnings(fitted, grid, gap):
        print(f"audit evaluate: warning: {line}", file=sys.stderr)
    print(f"audit evaluate: {summary_line(grid, gap)} -> {out / project.GRID}")
    return 0


def _report(args) -> int:
    import pandas as pd

    from biaslab import artifacts
    from biaslab.audit.run import judge_and_report
    from biaslab.fairness.verdict import Criterion

    out, params = Path(args.out), settings(args)
    options = params.evaluate.model_dump()
    groups = list(options.pop("groups"))
    predictions, decisions = _inputs(args)
    report = params.report
    verdict, page = judge_and_report(
        predictions, decisions, pd.read_csv(out / project.GRID),
        pd.read_csv(out / project.GROUPS), groups,
        criteria=[Criterion(**c.model_dump()) for c in report.criteria],
        min_group_size=report.min_group_size, min_class_size=report.min_class_size,
        options=options, data_audit=data_audit(params))
    artifacts.write_json(verdict, out / project.VERDICT)
    artifacts.write_text(page, out / project.REPORT)
    print(f"audit report: verdict {verdict['pair']}: {verdict['verdict']} -> "
          f"{out / project.REPORT}")
    return 0


STEPS = {"postprocess": _postprocess, "evaluate": _evaluate, "report": _report}
