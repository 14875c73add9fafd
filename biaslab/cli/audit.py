"""Audit a model biaslab did not train, from a table of its predictions (CSV or Parquet).

One row per (model, image): a 0/1 label, the model's score (a probability; --logits when it is
a logit) or only its hard 0/1 decision (--decision), the image's groups and, optionally, its
split (val/test; without --split every row is a test row), patient (--patient: the bootstrap
and the permutation tests move whole patients) and id (--id: needed with several models). The
threshold methods are fitted on the val rows, the test decisions evaluated as the pipeline's
evaluate stage does (bootstrap intervals, permutation p-values, base-rate baselines, the pair
recommended on validation), report.criteria judged, and the pipeline's report rendered. Several
models of one recipe (--model with --seeds-of) are combined as the pipeline combines training
seeds: their variance is in every interval. --compare A B compares two of them on the same
test images, paired (OUT/compare.csv and a report section).

Settings: the pipeline's postprocess, evaluate, report and audit sections, from --params FILE
(params.yaml's schema; absent keys take their defaults) and the options below, which win. OUT
receives grid.csv, groups.csv, seeds.csv, fairness.json, verdict.json, thresholds.json and
report.html. Every bad input stops the audit before any work, with one line naming the file,
the column and the rows. Docs: docs/audit.md.

A model file instead (--model-file: TorchScript, ONNX, or a torchvision --arch plus state
dict) is scored on --images TABLE (the csv source's columns, paths under --root), the images
prepared as the pipeline prepares them; the predictions it makes are audited as above, and the
report shows what the model looks at (occlusion maps; deconvolution and Grad-CAM for --arch)
and how it holds up under rotation and noise.

--init DIR writes a DVC project whose `dvc repro` runs the audit of a predictions table
(biaslab.cli.audit_project).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from biaslab.cli import audit_model

EXAMPLES = """\
  biaslab audit --predictions preds.csv --groups sex,age_group --out audit/
  biaslab audit --predictions preds.parquet --groups sex --split split --patient patient \\
      --id image --n-perm 1000 --out audit/              # thresholds fitted on the val rows
  biaslab audit --predictions vendor.csv --decision flagged --groups sex --out audit/
  biaslab audit --predictions seeds.csv --groups sex --id image --model model \\
      --seeds-of densenet=seed0,seed1,seed2 --params params.yaml --out audit/
  biaslab audit --predictions two.csv --groups sex --id image --model model \\
      --compare baseline mitigated --out audit/          # paired: B - A, intervals, p
  biaslab audit --model-file cnn.pt --images metadata.csv --root xrays/ --input-size 64 \\
      --groups sex --patient patient_id --out audit/      # a TorchScript model, scored here
  biaslab audit --model-file weights.pt --arch resnet18 --output index:1 --channels 3 \\
      --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --images test.csv --root xrays/ \\
      --groups sex --out audit/
  biaslab audit --init my-audit --predictions preds.csv --groups sex --split split
      # a DVC project: cd my-audit && dvc repro (docs/audit.md)
"""
# option -> (section, key): the settings the options set, over --params FILE
SETTINGS = {
    "methods": ("postprocess", "methods"), "fixed_threshold": ("postprocess", "fixed_threshold"),
    "threshold_groups": ("postprocess", "groups"), "tolerance": ("postprocess", "tolerance"),
    "n_boot": ("evaluate", "n_boot"), "n_perm": ("evaluate", "n_perm"),
    "level": ("evaluate", "level"), "seed": ("evaluate", "seed"),
    "resample": ("evaluate", "resample"), "min_cell": ("evaluate", "min_cell"),
    "correction": ("evaluate", "correction"), "pareto_gap": ("evaluate", "pareto_gap"),
    "max_accuracy_loss": ("evaluate", "max_accuracy_loss"),
    "intersect": ("evaluate", "intersect"), "min_group_size": ("evaluate", "min_group_size"),
}


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    table = parser.add_argument_group("the predictions table")
    table.add_argument("--predictions", metavar="FILE",
                       help="CSV or Parquet, one row per (model, image)")
    table.add_argument("--groups", type=_names, metavar="A,B",
                       help="attribute columns compared between groups (evaluate.groups; "
                            "default: --params' evaluate.groups)")
    table.add_argument("--label", default="label", help="0/1 label column (default: label)")
    what = table.add_mutually_exclusive_group()
    what.add_argument("--score", help="score column, a probability in [0, 1] (default: score)")
    what.add_argument("--decision", help="hard 0/1 decision column, when the model gives no "
                                         "score: no threshold is fitted")
    table.add_argument("--logits", action="store_true", help="the score column holds logits")
    table.add_argument("--split", help="column of val/test (default: every row is test)")
    table.add_argument("--patient", help="patient column (default: one patient per image)")
    table.add_argument("--id", help="image id column (needed with several models)")
    table.add_argument("--model", help="column naming the model of each row")
    table.add_argument("--seeds-of", action="append", default=[], metavar="NAME=M1,M2,...",
                       help="models of --model that are seeds of one recipe NAME, combined "
                            "with the seeds' variance in every interval (repeatable)")
    table.add_argument("--compare", nargs=2, metavar=("A", "B"),
                       help="two models (or --seeds-of recipes) compared, paired: B - A of "
                            "every figure and gap, to OUT/compare.csv and the report")
    settings = parser.add_argument_group("settings (over --params)")
    settings.add_argument("--params", metavar="FILE",
                          help="a params.yaml: its postprocess, evaluate, report (criteria) "
                               "and audit sections")
    settings.add_argument("--methods", type=_names, help="postprocess.methods, comma-separated")
    settings.add_argument("--threshold-groups", type=_names, metavar="A,B",
                          help="postprocess.groups (default: the first of --groups)")
    for name, kind, key in (("fixed-threshold", float, "postprocess.fixed_threshold"),
                            ("tolerance", float, "postprocess.tolerance"),
                            ("n-boot", int, "evaluate.n_boot"), ("n-perm", int, "evaluate.n_perm"),
                            ("level", float, "evaluate.level"), ("seed", int, "evaluate.seed"),
                            ("resample", str, "evaluate.resample"),
                            ("min-cell", int, "evaluate.min_cell"),
                            ("correction", str, "evaluate.correction"),
                            ("pareto-gap", str, "evaluate.pareto_gap"),
                            ("max-accuracy-loss", float, "evaluate.max_accuracy_loss"),
                            ("min-group-size", int, "evaluate.min_group_size")):
        settings.add_argument(f"--{name}", type=kind, help=key)
    settings.add_argument("--intersect", action=argparse.BooleanOptionalAction,
                          help="evaluate.intersect")
    parser.add_argument("--out", metavar="DIR", help="folder of the results")
    audit_model.add_arguments(parser)
    project = parser.add_argument_group("as a DVC project (docs/audit.md)")
    project.add_argument("--init", metavar="DIR", help="write a DVC project in DIR (dvc.yaml, "
                         "params.yaml) whose `dvc repro` runs this audit, instead of running it")
    project.add_argument("--force", action="store_true",
                         help="with --init: overwrite DIR's dvc.yaml and params.yaml")
    project.add_argument("--step", choices=("postprocess", "evaluate", "report"),
                         help="one stage of such a project (its dvc.yaml runs them)")


def seeds_of(specs: list[str]) -> dict[str, list[str]]:
    """``["densenet=seed0,seed1"]`` -> ``{"densenet": ["seed0", "seed1"]}``."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, _, members = spec.partition("=")
        models = _names(members)
        if not name.strip() or len(models) < 2 or len(set(models)) != len(models):
            raise ValueError(f"--seeds-of {spec!r}: expected NAME=MODEL1,MODEL2,... with two or "
                             "more distinct models of the --model column")
        if name.strip() in out:
            raise ValueError(f"--seeds-of: recipe {name.strip()!r} given twice")
        out[name.strip()] = models
    return out


def settings(args) -> object:
    """The validated params (:class:`biaslab.config.Params`): --params FILE, then the options."""
    from biaslab.config import ConfigError, load_params, parse_params

    raw = load_params(args.params) if args.params else {}
    sections = {s: dict(raw.get(s) or {}) for s in ("postprocess", "evaluate", "report", "audit")}
    for option, (section, key) in SETTINGS.items():
        if getattr(args, option) is not None:
            sections[section][key] = getattr(args, option)
    if args.groups:
        sections["evaluate"]["groups"] = args.groups
    elif "groups" not in sections["evaluate"]:
        raise ValueError("give --groups, the attribute columns to compare (e.g. --groups "
                         "sex,age_group), or a --params file setting evaluate.groups")
    groups = sections["evaluate"]["groups"]
    sections["postprocess"].setdefault("groups", groups[:1])
    sections["audit"]["attributes"] = groups
    try:
        return parse_params({**raw, **sections})
    except ConfigError as exc:  # said with the options the user gave, or the file's name
        given = {f"{section}.{key}": "--" + option.replace("_", "-")
                 for option, (section, key) in SETTINGS.items()
                 if getattr(args, option) is not None}
        if args.groups:
            given["evaluate.groups"] = "--groups"
        message = str(exc).replace("params.yaml: ", f"{args.params}: " if args.params else "")
        for key, option in given.items():
            message = re.sub(rf"(?<![\w.]){re.escape(key)}\b", option, message)
        raise ValueError(message) from None


def read_table(path: str, text_columns: list[str]):
    """The predictions table; the naming columns read as text (an id 007 stays 007)."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--predictions: {path} not found")
    suffix = file.suffix.lower()
    try:  # a file that is no table: said with its name, not as the reader's own words alone
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(file)
        if suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            header = pd.read_csv(file, sep=sep, nrows=0).columns
            return pd.read_csv(file, sep=sep, dtype={c: str for c in text_columns if c in header})
    except (ValueError, OSError) as exc:  # pandas' and pyarrow's parse errors are ValueErrors
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"--predictions: {path}: not a readable {suffix.lstrip('.')} table "
                         f"({why})") from None
    raise ValueError(f"--predictions: {path}: expected a .csv, .tsv or .parquet file")


def run(args) -> int:
    from biaslab.cli.warning_lines import warning_lines

    if args.force and not args.init:
        raise ValueError("--force overwrites the files of --init DIR: give --init, or drop it")
    if args.init or args.step:
        from biaslab.cli.audit_project import run_project

        return run_project(args)
    if not args.out:
        raise ValueError("give --out DIR, the folder of the results (or --init DIR: a DVC "
                         "project that runs the audit)")
    with warning_lines("audit"):  # the library's warnings (a rate undefined for a group)
        return _audit(args)


def checked_table(args, params):
    """The checked table (:class:`biaslab.audit.table.Predictions`), why a method that needs
    a fit is not applicable without val rows, and, for a model file, what it looks at
    (:func:`biaslab.audit.run.audit_predictions`' keywords)."""
    from biaslab.audit.table import Columns, check_predictions

    evaluate, postprocess = params.evaluate, params.postprocess
    columns = Columns(label=args.label, score=None if args.decision else (args.score or "score"),
                      decision=args.decision, logits=args.logits, split=args.split,
                      patient=args.patient, id=args.id, model=args.model)
    groups = list(dict.fromkeys([*evaluate.groups, *postprocess.groups]))
    text = [c for c in (args.split, args.patient, args.id, args.model, *groups) if c]
    extra: dict = {}  # a model file: what it looks at, for the report
    if args.model_file:
        predictions, extra = audit_model.predictions(args, params, groups, seeds_of(args.seeds_of))
    elif not args.predictions:
        raise ValueError("give --predictions FILE (a table of a model's predictions) or "
                         "--model-file FILE with --images TABLE --root DIR")
    else:
        predictions = check_predictions(read_table(args.predictions, text), groups, columns,
                                        source=args.predictions, seeds=seeds_of(args.seeds_of))
    no_val = ("no validation rows: without --split every row is a test row" if not args.split
              else f"no validation rows: no row of column {args.split!r} is val")
    return predictions, no_val, extra


def data_audit(params) -> dict:
    """The report's data audit of the table's images: the ``audit`` section's keywords."""
    return {"min_group_size": params.audit.min_group_size, "level": params.audit.level,
            "min_effect": params.audit.simpson_min_effect}


def _audit(args) -> int:
    from biaslab import artifacts
    from biaslab.audit.run import audit_predictions
    from biaslab.fairness.verdict import Criterion

    params = settings(args)
    evaluate, postprocess, report = params.evaluate, params.postprocess, params.report
    predictions, no_val, extra = checked_table(args, params)
    result = audit_predictions(
        predictions, postprocess=postprocess.model_dump(),
        evaluate_options=evaluate.model_dump(),
        criteria=[Criterion(**c.model_dump()) for c in report.criteria],
        min_group_size=report.min_group_size, min_class_size=report.min_class_size,
        data_audit=data_audit(params), no_val=no_val, compare=args.compare, **extra)
    out = Path(args.out)
    artifacts.write_csv(result.grid, out / "grid.csv")
    artifacts.write_csv(result.per_group, out / "groups.csv")
    artifacts.write_csv(result.per_seed, out / "seeds.csv")
    artifacts.write_json(result.fairness, out / "fairness.json")
    artifacts.write_json(result.verdict, out / "verdict.json")
    artifacts.write_json(result.thresholds, out / "thresholds.json")
    if result.comparison is not None:
        artifacts.write_csv(result.comparison, out / "compare.csv")
    artifacts.write_text(result.report, out / "report.html")
    for line in result.warnings:
        print(f"audit: warning: {line}", file=sys.stderr)
    models = sum(len(m) for m in predictions.recipes.values())
    print(f"audit: {models} model(s) in {len(predictions.recipes)} recipe(s); {result.summary}; "
          f"verdict {result.verdict['pair']}: {result.verdict['verdict']} -> {out / 'report.html'}")
    return 0
