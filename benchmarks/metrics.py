"""Benchmark: per-group metrics with bootstrap intervals, biaslab against fairlearn.

Two cases, each timed in this one run:

- **images**: 100,000 predictions in 4 groups, rows resampled within each group;
- **patients**: 100,000 predictions from 30,000 patients (1 to about 12 images each) in 8 groups
  (a patient attribute with 4 values x S drawn per image, so most patients have images in two
  groups), whole patients resampled (``resample="patient"``).

biaslab computes every per-group metric (n, prevalence, accuracy, balanced accuracy, TPR, FPR,
PPV, selection rate, flip rate, AUC, calibration error), the between-group gaps and their
intervals from 1,000 resamples; fairlearn's MetricFrame computes the same per-group metrics (not
the gaps) with its own bootstrap (``n_boot``), which costs a full pass per resample, so it gets
only a few resamples. MetricFrame resamples rows and has no patient option: a patient bootstrap
built on it would cost at least as much per resample. Prints both times, the ratio of cost per
resample, and the peak memory of biaslab's patient bootstrap (bounded: resamples are drawn in
chunks, never a resamples x patients matrix at once). Then the permutation test of every gap on
the patients case, with one training seed and with three (the seeds' models deciding on the
same images), and the ratio of the two times.

    .venv/bin/python -m benchmarks.metrics [--n 100000] [--patients 30000] [--boot 1000]
        [--fairlearn-boot 10]
"""

import argparse
import time
import tracemalloc
import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score, precision_score, recall_score, roc_auc_score

from biaslab.fairness.bootstrap import binned_resamples, score_bins
from biaslab.fairness.metrics import group_report
from biaslab.fairness.significance import permutation_pvalues


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, n)
    y = (rng.random(n) < 0.3 + 0.1 * g).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.8 * y - 0.3 * g)))
    return y, (scores >= 0.5).astype(int), g, scores


def _clustered(n: int, n_patients: int, seed: int = 0):
    """Labels, decisions, 8 groups, scores and patient ids; a patient effect on label and score."""
    rng = np.random.default_rng(seed)
    per = 1 + rng.multinomial(n - n_patients, np.full(n_patients, 1 / n_patients))
    patient = np.repeat(np.arange(n_patients), per)
    effect = rng.normal(0, 1, n_patients)[patient]
    attr = rng.integers(0, 4, n_patients)[patient]
    s = rng.integers(0, 2, n)  # drawn per image: a patient's images fall in two groups
    y = (rng.random(n) < 1 / (1 + np.exp(0.8 - effect - 0.2 * attr))).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.8 * y + 0.5 * effect - 0.3 * s)))
    return y, (scores >= 0.5).astype(int), 2 * attr + s, scores, patient


def _seeds(scores: np.ndarray, m: int, seed: int = 2):
    """Decisions and scores (m, n) of m training seeds: the first are the given ones, each
    other seed's scores shift every image's logit by its own noise (sd 0.5)."""
    rng = np.random.default_rng(seed)
    logit = np.log(scores / (1 - scores))
    noise = np.vstack([np.zeros(len(scores)), rng.normal(0, 0.5, (m - 1, len(scores)))])
    out = 1 / (1 + np.exp(-(logit + noise)))
    return (out >= 0.5).astype(int), out


def _ece(y_true, y_score, bins=10):
    edges = np.quantile(y_score, np.linspace(0, 1, bins + 1)[1:-1])
    k = np.searchsorted(edges, y_score, side="right")
    return np.abs(np.bincount(k, weights=y_score - y_true, minlength=bins)).sum() / len(y_true)


def fairlearn_time(y, d, g, scores, n_boot: int) -> float:
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate

    metrics = {"accuracy": lambda t, p: np.mean(t == p), "balanced_accuracy":
               balanced_accuracy_score, "tpr": recall_score, "fpr": false_positive_rate,
               "ppv": precision_score, "selection_rate": selection_rate}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MetricFrame(metrics=metrics, y_true=y, y_pred=d, sensitive_features=g, n_boot=n_boot,
                    ci_quantiles=[0.025, 0.975], random_state=0)
        # the score metrics take y_score: a second frame, with the same resamples
        MetricFrame(metrics={"auc": roc_auc_score, "calibration_error": _ece}, y_true=y,
                    y_pred=scores, sensitive_features=g, n_boot=n_boot,
                    ci_quantiles=[0.025, 0.975], random_state=0)
    return time.perf_counter() - t0


def _compare(title, y, d, g, scores, boot, fairlearn_boot, target, limit, patients=None):
    flip = (np.random.default_rng(1).random(len(y)) < 0.05).astype(int)
    resample = "image" if patients is None else "patient"
    t0 = time.perf_counter()
    group_report(y, d, g, flip=flip, scores=scores, patients=patients, resample=resample,
                 n_boot=boot, seed=0, name="g")
    ours = time.perf_counter() - t0
    theirs = fairlearn_time(y, d, g, scores, fairlearn_boot)
    ratio = (theirs / fairlearn_boot) / (ours / boot)
    print(title)
    print(f"  biaslab  : {boot:>5} resamples in {ours:7.2f} s  "
          f"({1000 * ours / boot:8.2f} ms per resample)")
    print(f"  fairlearn: {fairlearn_boot:>5} resamples in {theirs:7.2f} s  "
          f"({1000 * theirs / fairlearn_boot:8.2f} ms per resample)")
    print(f"  biaslab is {ratio:,.0f}x cheaper per resample (target >= {target:,}x; "
          f"{boot:,} resamples {'<' if ours < limit else '>='} {limit} s)")


def _patient_memory(y, d, g, scores, patients, boot) -> float:
    """Peak memory (MiB) of the patient bootstrap's resampled statistics."""
    bins, n_bins = score_bins(scores, 256)
    tracemalloc.start()
    binned_resamples(g, 2 * y + d, bins, scores, 8, n_bins, boot, 0, units=patients)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=30_000)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--fairlearn-boot", type=int, default=10)
    args = parser.parse_args()
    y, d, g, scores = _data(args.n)
    group_report(y[:1000], d[:1000], g[:1000], scores=scores[:1000], n_boot=10)  # warm up
    _compare(f"{args.n:,} predictions, 4 groups, images resampled", y, d, g, scores,
             args.boot, args.fairlearn_boot, target=300, limit=5)
    y, d, g, scores, patients = _clustered(args.n, args.patients)
    _compare(f"{args.n:,} predictions from {args.patients:,} patients, 8 groups, patients "
             "resampled", y, d, g, scores, args.boot, args.fairlearn_boot, target=1000,
             limit=2, patients=patients)
    peak = _patient_memory(y, d, g, scores, patients, args.boot)
    print(f"  peak memory of the patient bootstrap: {peak:.0f} MiB (its output, "
          f"{args.boot} x 8 groups x {8 + 2 * 256 + 30} statistics, is "
          f"{args.boot * 8 * 550 * 8 / 2**20:.0f} MiB)")
    # the permutation test of every gap (p-values), on the same clustered data
    start = time.perf_counter()
    permutation_pvalues(y, d, g, patients=patients, scores=scores, n_perm=args.boot)
    seconds = time.perf_counter() - start
    print(f"permutation test: {args.boot:,} permutations of {args.n:,} predictions from "
          f"{args.patients:,} patients, 8 groups, every gap: {seconds:.2f} s")
    # ... and of the seed-averaged gaps of 3 training seeds' models on the same images
    seed_d, seed_scores = _seeds(scores, 3)
    start = time.perf_counter()
    permutation_pvalues(y, seed_d, g, patients=patients, scores=seed_scores, n_perm=args.boot)
    seeds = time.perf_counter() - start
    print(f"  with 3 training seeds (decisions and scores 3 x {args.n:,}): {seeds:.2f} s, "
          f"{seeds / seconds:.2f}x the time of one seed")


if __name__ == "__main__":
    main()
