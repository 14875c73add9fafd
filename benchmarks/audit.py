"""Benchmark: the audit's evaluation of a predictions table at NIH ChestX-ray14 test scale.

A generated predictions table (seeded) like the test split of ChestX-ray14: 22,000 images from
9,000 patients (1 to about 10 images each), attributes ``sex`` (of the patient) and
``age_group`` (the age at each image: a patient followed over the years may cross a boundary, so
a few patients have images in two groups), audited intersected (sex, age_group, sex&age_group),
and 8 models x 3 training seeds (``--seeds-of``) scoring every image, test rows only, the
``fixed`` threshold: 8 (model, method) pairs of 3 seeds. The audit's evaluation runs in-process
as ``biaslab audit`` runs it (:func:`biaslab.audit.run.decide` and
:func:`biaslab.audit.run.evaluate`: per-seed figures with patient bootstrap intervals, the
seeds combined, every gap's permutation p-value, the recommendation), without the report.

Prints the total time, the bootstrap's time (every seed, every attribute) and the permutation
tests' time (every pair's and seed's together, one relabelling for all) per pair, their ratio,
and the peak memory: the process's resident set (``resource.getrusage``) before and after the
evaluation, and tracemalloc's peak over the permutation tests of every pair (bounded:
permutations are drawn in chunks, never a permutations x images matrix at once). The goal
(issue 20): the whole evaluation of 8 pairs x 3 seeds with 1,000 resamples and 10,000
permutations within 60 s on the 2-core machine.

    .venv/bin/python -m benchmarks.audit [--n 22000] [--patients 9000] [--models 8]
        [--seeds 3] [--boot 1000] [--perm 10000] [--baseline]
"""

import argparse
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

import biaslab.fairness.evaluate as evaluate_module
from biaslab.audit.run import decide, evaluate
from biaslab.audit.table import Columns, check_predictions

AGE_EDGES = (40, 60, 80)  # age groups <40, 40-59, 60-79, 80+


def predictions_table(n: int, n_patients: int, models: int, seeds: int,
                      seed: int = 0) -> pd.DataFrame:
    """One row per (model, image): ``model``, ``image``, ``patient``, ``sex``, ``age_group``,
    ``label``, ``score``; a patient effect on the label and on every model's scores."""
    rng = np.random.default_rng(seed)
    per = 1 + rng.multinomial(n - n_patients, np.full(n_patients, 1 / n_patients))
    patient = np.repeat(np.arange(n_patients), per)
    effect = rng.normal(0, 1, n_patients)[patient]
    sex = rng.choice(np.array(["F", "M"]), n_patients)[patient]
    # follow-up: each image is taken up to 6 years after the patient's first one
    age = rng.integers(18, 90, n_patients)[patient] + rng.integers(0, 7, n)
    age_group = np.array(["<40", "40-59", "60-79", "80+"])[np.searchsorted(AGE_EDGES, age,
                                                                          side="right")]
    logit = -1.2 + 0.8 * effect + 0.02 * (age - 50) + 0.2 * (sex == "M")
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    image = np.array([f"img{i:06d}" for i in range(n)])
    parts = []
    for k in range(models):
        quality = 1.0 + 0.2 * k  # the models differ in how well they separate the classes
        for s in range(seeds):
            noise = rng.normal(0, 1, n) + 0.3 * effect + 0.3 * (sex == "F") * (k % 2)
            score = 1 / (1 + np.exp(-(quality * (2 * label - 1) + noise)))
            parts.append(pd.DataFrame({
                "model": f"m{k}_seed{s}", "image": image, "patient": patient.astype(str),
                "sex": sex, "age_group": age_group, "label": label, "score": score}))
    return pd.concat(parts, ignore_index=True)


class Timed:
    """Wraps a function of :mod:`biaslab.fairness.evaluate`, adding up the time of its calls."""

    def __init__(self, name: str):
        self.name, self.inner, self.seconds, self.calls = name, getattr(
            evaluate_module, name), 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def __enter__(self):
        setattr(evaluate_module, self.name, self)
        return self

    def __exit__(self, *exc):
        setattr(evaluate_module, self.name, self.inner)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=22_000)
    parser.add_argument("--patients", type=int, default=9_000)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--perm", type=int, default=10_000)
    parser.add_argument("--baseline", action="store_true",
                        help="time the bootstrap again with every call drawing its own "
                             "patients (the design before the shared draws), for the ratio")
    args = parser.parse_args()
    groups = ["sex", "age_group"]
    table = predictions_table(args.n, args.patients, args.models, args.seeds)
    recipes = {f"m{k}": [f"m{k}_seed{s}" for s in range(args.seeds)]
               for k in range(args.models)}
    columns = Columns(score="score", patient="patient", id="image", model="model")
    predictions = check_predictions(table, groups, columns, seeds=recipes)
    decisions, fitted = decide(predictions, ["fixed"], ["sex"])
    options = dict(n_boot=args.boot, n_perm=args.perm, intersect=True, resample="patient")
    rss_before = _rss_mib()
    start = time.perf_counter()
    with Timed("group_report") as boot, Timed("model_pvalues") as perm:
        evaluation, grid = evaluate(predictions, decisions, fitted, groups, **options)
    total = time.perf_counter() - start
    rss_after = _rss_mib()
    pairs = len(grid)
    attrs = perm.calls  # one call per attribute: every pair's relabellings drawn together
    print(f"audit of {pairs} (model, method) pairs x {args.seeds} seeds: {args.n:,} test "
          f"images from {args.patients:,} patients, {attrs} attributes (sex, age_group "
          f"intersected), {args.boot:,} resamples, {args.perm:,} permutations")
    print(f"  total evaluation     : {total:7.2f} s (goal: 8 pairs x 3 seeds within 60 s)")
    print(f"  bootstrap per pair   : {boot.seconds / pairs:7.2f} s ({args.seeds} seeds x "
          f"{attrs} attributes, {boot.calls} calls in all)")
    print(f"  permutations per pair: {perm.seconds / pairs:7.2f} s ({attrs} attributes, the "
          f"seeds and pairs together, {perm.calls} calls in all)")
    print(f"  permutations / bootstrap: {perm.seconds / boot.seconds:.2f}x; the rest "
          f"(combining, choosing): {total - boot.seconds - perm.seconds:.2f} s")
    print(f"  peak resident memory : {rss_before:,.0f} MiB before the evaluation (the table), "
          f"{rss_after:,.0f} MiB after")
    # tracemalloc slows every allocation: the permutation tests of every pair again, apart;
    # one chunk of permutations is the most they hold, so fewer permutations tell the peak
    sets = {}
    for recipe, models in decisions.items():
        sets[(recipe, "fixed", "test")] = [
            t[t["split"] == "test"].merge(predictions.attributes.drop(columns="split"), on="row")
            .sort_values("row", kind="stable") for t in models.values()]
    n_perm = min(args.perm, 1000)
    tracemalloc.start()
    evaluate_module._pvalues(sets, groups, True, n_perm, 0, "patient")
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"  peak memory of the permutation tests ({n_perm:,} permutations, every pair, "
          f"tracemalloc): {peak:,.0f} MiB")
    if args.baseline:
        _baseline(predictions, decisions, fitted, groups, options, boot.seconds / pairs)


class _EachCallDraws:
    """Stands for :class:`biaslab.fairness.bootstrap.SharedDraws` and shares nothing: every
    (pair, seed, attribute) draws its own patients, merged into types (the design before)."""

    def get(self, *args):
        return None


def _baseline(predictions, decisions, fitted, groups, options, shared_per_pair: float) -> None:
    """The bootstrap again, every call drawing its own patients, in the same run: the ratio."""
    shared = evaluate_module.SharedDraws
    evaluate_module.SharedDraws = _EachCallDraws
    try:
        with Timed("group_report") as boot:
            _, grid = evaluate(predictions, decisions, fitted, groups,
                               **{**options, "n_perm": 0})
    finally:
        evaluate_module.SharedDraws = shared
    per_pair = boot.seconds / len(grid)
    print(f"  bootstrap per pair, every call drawing its own patients (before): "
          f"{per_pair:7.2f} s, {per_pair / shared_per_pair:.1f}x the shared draws'")


if __name__ == "__main__":
    main()
