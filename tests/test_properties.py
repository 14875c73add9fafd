"""Property tests (hypothesis): invariants that must hold for any data, not just examples."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from biaslab.fairness.metrics import group_report
from biaslab.fairness.thresholds import DemographicParityThresholds
from biaslab.fairness.weights import compute_weights

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def labelled_groups(draw, min_size=20, max_size=300, n_groups=(2, 4)):
    """Labels, groups (every group with both labels), scores with ties, decisions."""
    n = draw(st.integers(min_size, max_size))
    k = draw(st.integers(*n_groups))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    g = rng.integers(0, k, n)
    g[: 2 * k] = np.repeat(np.arange(k), 2)
    y = rng.integers(0, 2, n)
    y[: 2 * k] = np.tile([0, 1], k)  # every group has both labels
    decimals = draw(st.sampled_from([1, 2, 6]))  # coarse scores give many ties
    scores = np.round(np.clip(rng.normal(0.3 + 0.4 * y, 0.25), 0, 1), decimals)
    d = (rng.random(n) < scores).astype(int)
    return y, d, g, scores


@SETTINGS
@given(labelled_groups(), st.integers(1, 3))
def test_reweighing_makes_label_and_group_independent(data, n_attr):
    y, _, g, _ = data
    table = pd.DataFrame({"label": y, "g": g, "h": np.arange(len(y)) * 7 % n_attr})
    groups = ["g", "h"][: 1 + (n_attr > 1)]  # one attribute, or an intersection of two
    key = table[groups].astype(str).agg("|".join, axis=1).to_numpy()
    # a (group, label) cell with no row cannot be weighted up: independence needs them all
    assume(len(set(zip(key, y, strict=True))) == 2 * len(set(key)))
    w = compute_weights(table, "reweighing", groups)
    total = w.sum()
    for k in np.unique(key):
        for label in (0, 1):
            joint = w[(key == k) & (y == label)].sum() / total
            assert np.isclose(joint, (w[key == k].sum() / total) * (w[y == label].sum() / total))


@SETTINGS
@given(labelled_groups(min_size=40, max_size=400))
def test_demographic_parity_thresholds_equalise_selection_rates_on_fit_data(data):
    y, _, g, scores = data
    post = DemographicParityThresholds().fit(scores, y, g)
    d = post.predict(scores, g)
    target = post.target_
    for k in np.unique(g):
        m = g == k
        # the cuts a group can make move its rate by one block of tied scores at a time: its
        # rate is within the largest such block (as a share of the group) of the common target
        _, counts = np.unique(scores[m], return_counts=True)
        step = counts.max() / m.sum()
        assert abs(d[m].mean() - target) <= step + 1e-9


@SETTINGS
@given(labelled_groups(), st.integers(0, 2**16))
def test_metrics_are_invariant_to_row_order(data, perm_seed):
    y, d, g, scores = data
    perm = np.random.default_rng(perm_seed).permutation(len(y))
    a = group_report(y, d, g, scores=scores, n_boot=30, seed=1, bins=64)
    b = group_report(y[perm], d[perm], g[perm], scores=scores[perm], n_boot=30, seed=1, bins=64)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])


@SETTINGS
@given(labelled_groups(), st.integers(0, 2**16), st.integers(1, 6))
def test_patient_metrics_are_invariant_to_row_order_and_patient_names(data, perm_seed,
                                                                       per_patient):
    y, d, g, scores = data
    rng = np.random.default_rng(perm_seed)
    patients = rng.integers(0, max(1, len(y) // per_patient), len(y))
    perm = rng.permutation(len(y))
    renamed = np.array([f"p{p * 31 % 1009}" for p in patients])  # the same patients
    a = group_report(y, d, g, scores=scores, patients=patients, n_boot=30, seed=1, bins=64)
    b = group_report(y[perm], d[perm], g[perm], scores=scores[perm], patients=renamed[perm],
                     n_boot=30, seed=1, bins=64)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert a[0]["patients"].iloc[-1] == len(np.unique(patients))
