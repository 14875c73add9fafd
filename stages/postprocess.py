"""postprocess@SCHEME-SEED: fit each threshold method on validation, apply it to val and test.

Per-group methods take the group of each row from ``postprocess.groups`` (``s`` and/or index
columns, intersected); :func:`biaslab.fairness.thresholds.decide_methods` writes the decisions,
counterfactual ones included. A method the validation rows cannot support (a group with one
class, as under extreme bias) is left out of the decisions, recorded in the thresholds file as
``{"METHOD": {"not_applicable": REASON}}`` and said in a warning; the others go on.

Long predictions of a multi-label run (a ``finding`` column): every method is fit per finding
on that finding's labels (:func:`biaslab.fairness.thresholds.findings.decide_findings`); the
decisions are long too, and the thresholds file is ``{FINDING: {METHOD: ...}}``.
"""

import argparse
import sys
from pathlib import Path

from biaslab import artifacts
from biaslab.config import load_section
from biaslab.fairness.thresholds import decide_methods, not_applicable
from biaslab.fairness.thresholds.findings import decide_findings, is_multilabel
from stages import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("predictions", "index", "bias", "out", "thresholds"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--name", help="SCHEME-SEED, for the messages (default: --out's name)")
    args = parser.parse_args()
    cfg = load_section("postprocess")
    stage = f"postprocess@{args.name or Path(args.out).stem}"

    preds = artifacts.read_table(args.predictions, required=("row", "split", "score")).merge(
        artifacts.read_rows(args.index, args.bias), on="row")
    val, test = preds[preds["split"] == "val"], preds[preds["split"] == "test"]
    options = dict(fixed_threshold=cfg.fixed_threshold, tolerance=cfg.tolerance, seed=cfg.seed)
    if is_multilabel(preds):  # long predictions: every method fit per finding
        decisions, by_finding = decide_findings(cfg.methods, val, test, cfg.groups, **options)
        skipped = {f"{method} ({finding})": why for finding, fitted in by_finding.items()
                   for method, why in not_applicable(fitted).items()}
        fitted, stage = by_finding, f"{stage} ({len(by_finding)} findings)"
    else:
        decisions, fitted = decide_methods(cfg.methods, val, test, cfg.groups, **options)
        skipped = not_applicable(fitted)
    artifacts.write_parquet(decisions, args.out)
    artifacts.write_json(fitted, args.thresholds)
    for method, reason in skipped.items():
        print(f"{stage}: warning: {method} not applicable: {reason}", file=sys.stderr)
    applied = [m for m in cfg.methods if m not in skipped]  # multi-label: per finding, said above
    print(f"{stage}: {len(applied)} methods ({', '.join(applied)}) fit on {len(val)} val rows, "
          f"groups {cfg.groups}, applied to {len(test)} test rows"
          + (f", {len(skipped)} not applicable" if skipped else "") + f" -> {args.out}")


if __name__ == "__main__":
    run(main, "postprocess")
