"""Combining the training seeds' rows of the grid: the interval of the mean over seeds, and every
other column's rule."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from biaslab.fairness import across_seeds as seeds
from biaslab.fairness import metrics

Z = stats.norm.ppf(0.975)  # a half-width of Z * sd is a 95% normal interval of sd


def seed_rows(points, sds, figure="accuracy", seed=(0, 1, 2), **columns) -> pd.DataFrame:
    """One (none, fixed) row per seed: ``figure`` with the interval point -/+ Z sd."""
    rows = pd.DataFrame({"scheme": "none", "method": "fixed", "seed": list(seed),
                         figure: points})
    rows[f"{figure}_lo"] = rows[figure] - Z * np.asarray(sds, float)
    rows[f"{figure}_hi"] = rows[figure] + Z * np.asarray(sds, float)
    return rows.assign(**columns)


def test_three_seeds_by_hand():
    # points 0.50, 0.54, 0.58: mean 0.54, B = (0.04² + 0 + 0.04²) / 2 = 0.0016;
    # each interval +-Z 0.02: W = 0.02² = 0.0004; T = W + B / 3 = 0.00093333...;
    # df = (3 - 1) (T / (B / 3))² = 2 x 1.75² = 6.125
    got = seeds.combine(seed_rows([0.50, 0.54, 0.58], [0.02] * 3)).iloc[0]
    half = stats.t.ppf(0.975, 6.125) * np.sqrt(0.0004 + 0.0016 / 3)
    assert got["accuracy"] == pytest.approx(0.54)
    assert got["accuracy_lo"] == pytest.approx(0.54 - half)
    assert got["accuracy_hi"] == pytest.approx(0.54 + half)
    assert half == pytest.approx(0.074386, abs=1e-6)
    assert got["accuracy_seed_sd"] == pytest.approx(0.04)
    assert got["seeds"] == "0 1 2"
    assert "seed" not in got


def test_no_spread_between_seeds_gives_the_normal_interval_of_the_mean_within_variance():
    # B = 0: df infinite, T = W = mean of 0.01², 0.02², 0.03²
    got = seeds.combine(seed_rows([0.5] * 3, [0.01, 0.02, 0.03])).iloc[0]
    assert got["accuracy_hi"] - 0.5 == pytest.approx(Z * np.sqrt((1 + 4 + 9) / 3 * 1e-4))
    assert got["accuracy_seed_sd"] == 0


def test_one_seed_is_its_own_row():
    one = seed_rows([0.9], [0.03], seed=[4], n=72, insufficient="tpr: 4 positives")
    one["accuracy_hi"] = 0.99  # an asymmetric percentile interval is kept as it is
    one["s.disparate_impact_p"] = 0.01
    got = seeds.combine(one)
    assert got.columns.tolist() == ["scheme", "method", "seeds", "accuracy", "accuracy_lo",
                                    "accuracy_hi", "accuracy_seed_sd", "n", "insufficient"]
    row = got.iloc[0]
    assert (row["accuracy"], row["accuracy_lo"], row["accuracy_hi"]) == (
        0.9, one["accuracy_lo"][0], 0.99)
    assert np.isnan(row["accuracy_seed_sd"]) and row["seeds"] == "4" and row["n"] == 72
    assert row["insufficient"] == "tpr: 4 positives"


@pytest.mark.parametrize(("figure", "points", "low", "high"), [
    ("auc", [0.96, 0.99, 1.0], None, 1.0),
    ("shifted.s.disparate_impact", [0.02, 0.05, 0.20], 0.0, None),  # a ratio: no top at 1
    ("s.disparate_impact", [1.3, 1.6, 1.9], None, None),
    ("s.statistical_parity_difference", [-0.99, -0.9, -0.95], -1.0, None),
    # SPD - base SPD: from -2 to 2
    ("s.excess_statistical_parity_difference", [-1.3, -1.25, -1.2], None, None),
    ("s.excess_statistical_parity_difference", [-1.9, -1.95, -1.85], -2.0, None),
    ("s.equalized_odds_difference", [0.0, 0.02, 0.05], 0.0, None),  # a range: >= 0
    ("val.something_new", [-0.1, 0.5, 1.2], None, None),  # a name of no known range
])
def test_the_interval_is_clipped_to_the_figures_natural_range(figure, points, low, high):
    got = seeds.combine(seed_rows(points, [0.05] * 3, figure=figure)).iloc[0]
    unclipped = seeds.combine(seed_rows(np.add(points, 100), [0.05] * 3, figure="x")).iloc[0]
    lo, hi = unclipped["x_lo"] - 100, unclipped["x_hi"] - 100
    assert got[f"{figure}_lo"] == pytest.approx(lo if low is None else low)
    assert got[f"{figure}_hi"] == pytest.approx(hi if high is None else high)
    assert (low is None or lo < low) and (high is None or hi > high)  # it did need clipping


def test_every_figure_evaluate_writes_has_a_natural_range():
    assert set(metrics.PER_GROUP) | set(metrics.GAPS) <= set(seeds.RANGES)
    assert seeds.natural_range("shifted.s.excess_disparate_impact") == (0, np.inf)


def test_texts_booleans_counts_means_and_p_values():
    rows = seed_rows([0.8, 0.8, 0.8], [0.01] * 3, seed=[2, 0, 1], **{
        "n": 72, "patients": [70, 70, 70], "warning": [None, None, np.nan],
        "insufficient": ["tpr: 4 positives"] * 3, "s.groups": "s=0:37;s=1:35",
        "s.insufficient": ["b", "a", None], "s.undefined": ["auc 1.0%", "tpr 3.0%", "tpr 3.0%"],
        "degenerate": [False, True, False], "val.balanced_accuracy": [0.7, 0.9, 0.8],
        "val.fairness_cost": [0.1, np.nan, 0.2], "s.disparate_impact_p": 0.01,
        "s.disparate_impact_p_adj": 0.03})
    got = seeds.combine(rows)
    assert "s.disparate_impact_p" not in got and "s.disparate_impact_p_adj" not in got
    row = got.iloc[0]
    assert row["seeds"] == "0 1 2"  # in increasing order, whatever the rows' order
    assert row["n"] == 72 and row["patients"] == 70 and got["n"].dtype == np.int64
    assert row["warning"] == "" and row["s.groups"] == "s=0:37;s=1:35"
    assert row["insufficient"] == "tpr: 4 positives"  # shared: once
    assert row["s.insufficient"] == "seed 0: a; seed 2: b"  # seed 1 has none
    assert row["s.undefined"] == "seeds 0 1: tpr 3.0%; seed 2: auc 1.0%"
    assert row["degenerate"] == True  # noqa: E712 (numpy's bool)
    assert row["val.balanced_accuracy"] == pytest.approx(0.8)
    assert np.isnan(row["val.fairness_cost"])  # a seed without it: none


def test_groups_keep_their_order_and_a_text_column_that_is_all_empty():
    rows = pd.concat([seed_rows([0.6, 0.7], [0.01] * 2, seed=[0, 1]).assign(method=m)
                      for m in ("youden", "fixed")], ignore_index=True)
    rows["warning"] = np.nan  # read back from a CSV: an empty text column is float
    got = seeds.combine(rows.iloc[[3, 0, 1, 2]])
    assert got["method"].tolist() == ["fixed", "youden"]
    assert (got["warning"] == "").all()


def test_different_counts_are_an_error_naming_the_column_group_and_seeds():
    rows = seed_rows([0.8, 0.8, 0.8], [0.01] * 3, n=[72, 70, 72])
    with pytest.raises(ValueError, match=(
            r"^combining seeds: n differs between the seeds of scheme=none, method=fixed "
            r"\(seed 0: 72, seed 1: 70, seed 2: 72\); it must be the same for every seed")):
        seeds.combine(rows)
    named = seed_rows([0.8, 0.8, 0.8], [0.01] * 3, positives=[5, 5, 6])
    assert seeds.combine(named)["positives"].iloc[0] == pytest.approx(5 + 1 / 3)
    with pytest.raises(ValueError, match="positives differs"):
        seeds.combine(named, constant=["positives"])


def test_a_count_missing_in_one_seed_comes_from_the_others():
    # the method was not applicable for seed 0: its row has no count and no figure
    rows = seed_rows([np.nan, 0.8, 0.9], [np.nan, 0.01, 0.01], n=[np.nan, 72, 72])
    got = seeds.combine(rows).iloc[0]
    assert got["n"] == 72


def test_a_seed_without_the_figure_makes_it_missing_and_says_so():
    rows = seed_rows([0.8, 0.82, np.nan], [0.01, 0.01, np.nan],
                     insufficient=[None, None, "tpr: 4 positives"])
    for figure in ("auc", "s.disparate_impact"):
        rows[[figure, f"{figure}_lo", f"{figure}_hi"]] = [[0.9, 0.85, 0.95], [0.9, 0.8, 1.0],
                                                         [np.nan] * 3]
    rows["auc"] = [0.9, np.nan, np.nan]
    got = seeds.combine(rows).iloc[0]
    for column in ("accuracy", "accuracy_lo", "accuracy_hi", "accuracy_seed_sd", "auc",
                   "s.disparate_impact"):
        assert np.isnan(got[column]), column
    assert got["insufficient"] == ("seed 2: tpr: 4 positives; accuracy: missing for seed 2 of "
                                   "0 1 2; auc: missing for seeds 1 2 of 0 1 2")
    assert got["s.insufficient"] == "disparate_impact: missing for seed 2 of 0 1 2"


def test_a_seed_without_an_interval_leaves_w_to_the_others():
    points = [0.50, 0.54, 0.58]
    some = seeds.combine(seed_rows(points, [0.02, np.nan, 0.04])).iloc[0]
    w, b = (0.02**2 + 0.04**2) / 2, 0.0016  # W over seeds 0 and 2 only
    df = 2 * ((w + b / 3) / (b / 3)) ** 2
    assert some["accuracy_hi"] == pytest.approx(0.54 + stats.t.ppf(0.975, df) *
                                                np.sqrt(w + b / 3))
    none = seeds.combine(seed_rows(points, [np.nan] * 3)).iloc[0]  # evaluate.n_boot = 0
    assert none["accuracy_hi"] == pytest.approx(0.54 + stats.t.ppf(0.975, 2) *
                                                np.sqrt(b / 3))


@pytest.mark.parametrize(("change", "says"), [
    (lambda r: r.assign(seed=[0, 1, 1]), "seed 1 appears more than once for scheme=none, "
                                         "method=fixed"),
    (lambda r: r.drop(columns="seed"), "no column seed in the table"),
    (lambda r: r.assign(seed=[0, np.nan, 2]), r"seed is missing in row\(s\) \[1\]"),
])
def test_rejects(change, says):
    with pytest.raises(ValueError, match=says):
        seeds.combine(change(seed_rows([0.5, 0.6, 0.7], [0.01] * 3)))


def test_level_out_of_range():
    with pytest.raises(ValueError, match=r"level = 95; expected a number in \(0, 1\)"):
        seeds.combine(seed_rows([0.5], [0.01], seed=[0]), level=95)


def test_coverage_the_mean_over_seeds_covers_what_one_seed_misses():
    """figure_s = mu + seed effect (sd tau) + sampling error (sd sigma, half of its variance
    shared by the seeds: one test set for all); each seed's interval is its figure -/+ Z times
    its bootstrap sd (sigma, estimated with some noise). 400 runs of 3 seeds."""
    rng = np.random.default_rng(2024)
    runs, m, mu, tau, sigma = 400, 3, 0.7, 0.04, 0.03
    effect, new = rng.normal(0, tau, (runs, m)), rng.normal(0, tau, runs)
    shared, own = rng.normal(size=(runs, 1)), rng.normal(size=(runs, m))
    figure = mu + effect + sigma * np.sqrt(0.5) * (shared + own)
    sd = sigma * np.exp(rng.normal(0, 0.1, (runs, m)))
    rows = pd.DataFrame({"run": np.repeat(np.arange(runs), m), "seed": np.tile(np.arange(m), runs),
                         "accuracy": figure.ravel(), "accuracy_lo": (figure - Z * sd).ravel(),
                         "accuracy_hi": (figure + Z * sd).ravel()})
    got = seeds.combine(rows, by=["run"])
    mean = ((got["accuracy_lo"] <= mu) & (mu <= got["accuracy_hi"])).mean()
    fresh = ((got["accuracy_lo"] <= mu + new) & (mu + new <= got["accuracy_hi"])).mean()
    single = (np.abs(figure[:, 0] - mu) <= Z * sd[:, 0]).mean()
    assert 0.92 <= mean <= 0.99  # the recipe's average over seeds: about nominal
    assert single <= 0.85  # one seed's sampling interval: clearly too narrow
    # it is not a prediction interval: a new seed's figure strays outside it more often
    assert fresh < mean
