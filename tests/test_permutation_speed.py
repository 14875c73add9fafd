"""The fast paths of the permutation test (biaslab.fairness.relabellings.count_columns, the
relabellings shared by several models in biaslab.fairness.significance.model_pvalues) against
straightforward references."""

import numpy as np
import pytest
from scipy import sparse

from biaslab.fairness import relabellings, significance
from biaslab.fairness.metrics import GAPS
from biaslab.fairness.relabellings import Columns, count_columns
from biaslab.fairness.significance import model_pvalues, permutation_pvalues


def _slow_count_columns(columns: Columns, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """Each group's histogram as the sum of its columns, permutation by permutation."""
    counts = columns.counts.toarray()
    hist = np.zeros((len(labels), n_groups, counts.shape[0]), dtype=np.int64)
    for r, row in enumerate(labels):
        for g in range(n_groups):
            hist[r, g] = counts[:, row == g].sum(1)
    return hist


@pytest.mark.parametrize(("n_groups", "largest"), [(2, 3), (3, 40), (8, 5), (9, 70000)])
def test_count_columns_sums_the_columns_of_each_group(monkeypatch, n_groups, largest):
    # (9, 70000): 17 bits a count, three groups a word, three words; the others one word
    rng = np.random.default_rng(n_groups)
    dense = rng.integers(0, largest + 1, (12, 300)) * (rng.random((12, 300)) < 0.3)
    counts = sparse.csc_matrix(dense.astype(np.int64))
    columns = Columns(counts, dense.sum(1))
    labels = rng.integers(0, n_groups, (37, 300)).astype(np.uint8)
    monkeypatch.setattr(relabellings, "CACHE", 2000)  # a few permutations per product
    expected = _slow_count_columns(columns, labels, n_groups)
    assert np.array_equal(count_columns(columns, labels, n_groups), expected)


def _data(n=600, seed=0):
    """Labels, 3 groups (a patient's for most images, drawn per image for some), patients,
    decisions and scores of 2 seeds with a real gap in the decisions."""
    rng = np.random.default_rng(seed)
    patients = rng.integers(0, n // 3, n)
    g = np.where(rng.random(n) < 0.8, rng.integers(0, 3, n // 3)[patients],
                 rng.integers(0, 3, n))
    y = (rng.random(n) < 0.4).astype(int)
    scores = rng.normal(size=(2, n)) + y * 1.2 - 0.15 * g
    return y, (scores > 0.5).astype(int), g, patients, scores


@pytest.mark.parametrize("by", ["patients", "images"])
def test_the_fast_counting_gives_the_pvalues_of_a_slow_one(monkeypatch, by):
    y, d, g, patients, scores = _data()
    kwargs = {"patients": patients if by == "patients" else None, "n_perm": 150, "seed": 3,
              "bins": 8, "scores": scores}
    fast = permutation_pvalues(y, d, g, **kwargs)
    monkeypatch.setattr(significance, "count_columns", _slow_count_columns)
    assert permutation_pvalues(y, d, g, **kwargs) == fast


def test_one_model_gives_exactly_the_pvalues_of_permutation_pvalues():
    y, d, g, patients, scores = _data(seed=1)
    kwargs = {"patients": patients, "n_perm": 99, "seed": 0, "bins": 8}
    one = permutation_pvalues(y, d, g, scores=scores, **kwargs)
    assert model_pvalues(y, [d], g, scores=[scores], **kwargs) == [one]


def test_identical_models_share_their_relabellings():
    y, d, g, patients, scores = _data(seed=2)
    found = model_pvalues(y, [d, d[:1], d], g, scores=[scores, scores[:1], scores],
                          patients=patients, n_perm=99, seed=0, bins=8)
    assert found[0] == found[2]  # the same data on the same relabellings
    assert found[0] != found[1]


def test_shared_relabellings_agree_with_one_test_per_model_within_monte_carlo_error():
    # the same null distribution drawn from another random stream: each p-value of a model
    # tested with others differs from its own test only by Monte-Carlo error, sd
    # sqrt(2 p (1 - p) / n_perm) for the difference of two independent estimates
    n_perm = 2000
    models = [_data(seed=s) for s in range(3)]
    y, _, g, patients, _ = models[0]
    shifted = [(d, sc) if i == 0 else ((sc > 0.5 + 0.2 * i).astype(int), sc)
               for i, (_, d, _, _, sc) in enumerate(models)]
    shared = model_pvalues(y, [d for d, _ in shifted], g, scores=[sc for _, sc in shifted],
                           patients=patients, n_perm=n_perm, seed=7, bins=8)
    for (d, sc), together in zip(shifted, shared, strict=True):
        alone = permutation_pvalues(y, d, g, scores=sc, patients=patients, n_perm=n_perm,
                                    seed=7, bins=8)
        for gap in GAPS:
            if np.isnan(alone[gap]):
                assert np.isnan(together[gap])
                continue
            p = (alone[gap] + together[gap]) / 2
            sd = np.sqrt(2 * max(p * (1 - p), 1 / n_perm) / n_perm)
            assert abs(alone[gap] - together[gap]) <= 4.5 * sd, gap
