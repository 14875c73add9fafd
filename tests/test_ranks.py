"""The rank test of methods (biaslab.fairness.ranks): Friedman, Iman-Davenport, Nemenyi's
critical difference, Wilcoxon-Holm against a control, on small tables with known answers."""

import numpy as np
import pandas as pd
import pytest

from biaslab.fairness.ranks import rank_test, sentence


def table(values: dict[str, list[float]]) -> pd.DataFrame:
    """One row per (method, seed): ``values[method][seed]``; methods spelt scheme/method."""
    rows = [{"scheme": name.split("/")[0], "method": name.split("/")[1], "seed": seed,
             "figure": value}
            for name, column in values.items() for seed, value in enumerate(column)]
    return pd.DataFrame(rows)


def test_friedman_statistic_and_mean_ranks_follow_the_formula():
    rng = np.random.default_rng(0)
    values = {f"m{j}/fixed": list(rng.normal(j * 0.1, 1, 12)) for j in range(4)}
    result = rank_test(table(values), figure="figure", methods=["scheme", "method"],
                       blocks=["seed"])
    wide = np.array(list(values.values())).T  # blocks x methods
    ranks = (-wide).argsort(axis=1).argsort(axis=1) + 1  # no ties in continuous draws
    n, k = wide.shape
    mean = ranks.mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(mean ** 2) - k * (k + 1) ** 2 / 4)
    assert result.friedman == pytest.approx(chi2)
    assert result.iman_davenport == pytest.approx((n - 1) * chi2 / (n * (k - 1) - chi2))
    by_method = dict(zip(result.ranks["method"], result.ranks["mean_rank"], strict=True))
    assert [by_method[f"m{j}/fixed"] for j in range(4)] == pytest.approx(list(mean))
    assert list(result.ranks["mean_rank"]) == sorted(result.ranks["mean_rank"])


def test_the_critical_difference_is_demsars():
    # Demšar (2006), Table 5(a): q_0.05 = 2.569 for k = 4; CD = q sqrt(k(k+1)/(6N))
    values = {f"m{j}/fixed": list(np.arange(10.0) + j) for j in range(4)}
    result = rank_test(table(values), figure="figure", methods=["scheme", "method"],
                       blocks=["seed"])
    assert result.cd == pytest.approx(2.569 * np.sqrt(4 * 5 / 60), abs=1e-3)


def test_a_method_better_on_every_block_is_found_and_named():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.6, 0.8, 10)
    values = {"none/fixed": list(base), "groupdro/fixed": list(base + 0.05),
              "jtt/fixed": list(base + rng.normal(0, 0.01, 10))}
    result = rank_test(table(values), figure="figure", methods=["scheme", "method"],
                       blocks=["seed"], control="none/fixed")
    assert result.friedman_p < 0.01 and result.ranks["method"].iloc[0] == "groupdro/fixed"
    row = result.pairwise.set_index("method").loc["groupdro/fixed"]
    assert row["outcome"] == "better" and row["difference"] == pytest.approx(0.05)
    assert result.pairwise.set_index("method").loc["jtt/fixed", "outcome"] == \
        "no difference shown"
    said = sentence(result)
    assert "1 method(s) beat none/fixed" in said and "groupdro/fixed" in said


def test_lower_is_better_turns_the_ranks_round():
    values = {"none/fixed": [0.3, 0.2, 0.4, 0.3, 0.35, 0.25],
              "dro/fixed": [0.1, 0.1, 0.2, 0.15, 0.12, 0.05]}
    result = rank_test(table(values), figure="figure", methods=["scheme", "method"],
                       blocks=["seed"], higher_is_better=False, control="none/fixed")
    assert result.ranks["method"].iloc[0] == "dro/fixed"
    # lower on all 6 blocks: Wilcoxon's smallest two-sided p, 2 / 2^6, below 0.05
    assert result.pairwise["p"].iloc[0] == pytest.approx(2 / 2 ** 6)
    assert result.pairwise["outcome"].iloc[0] == "better"


def test_three_seeds_cannot_show_a_difference_and_the_sentence_says_so():
    values = {"none/fixed": [0.7, 0.71, 0.69], "dro/fixed": [0.9, 0.91, 0.92]}
    result = rank_test(table(values), figure="figure", methods=["scheme", "method"],
                       blocks=["seed"], control="none/fixed")
    assert result.min_p == 0.25 and result.pairwise["p"].iloc[0] == pytest.approx(0.25)
    assert "with 3 blocks no p-value can fall below 0.25" in sentence(result)


def test_friedman_rejects_at_about_the_nominal_rate_when_methods_are_exchangeable():
    rng = np.random.default_rng(2)
    rejections = 0
    for _ in range(400):
        values = {f"m{j}/fixed": list(rng.normal(0, 1, 10)) for j in range(4)}
        result = rank_test(table(values), figure="figure", methods=["scheme", "method"],
                           blocks=["seed"])
        rejections += result.iman_davenport_p <= 0.05
    assert 0.02 <= rejections / 400 <= 0.09


def test_blocks_without_every_method_are_dropped_and_named():
    frame = table({"none/fixed": [0.1, 0.2, 0.3, 0.4], "dro/fixed": [0.2, 0.3, 0.4, 0.5]})
    frame.loc[(frame["scheme"] == "dro") & (frame["seed"] == 2), "figure"] = np.nan
    result = rank_test(frame, figure="figure", methods=["scheme", "method"], blocks=["seed"])
    assert result.n_blocks == 3 and result.dropped == ("seed 2",)


def test_identical_methods_are_not_shown_to_differ():
    values = {"none/fixed": [0.5, 0.6, 0.7, 0.8], "copy/fixed": [0.5, 0.6, 0.7, 0.8]}
    result = rank_test(table(values), figure="figure", methods=["scheme", "method"],
                       blocks=["seed"], control="none/fixed")
    assert result.friedman_p == 1.0 and result.pairwise["p"].iloc[0] == 1.0
    assert result.pairwise["outcome"].iloc[0] == "no difference shown"


@pytest.mark.parametrize("kwargs, message", [
    ({"figure": "auc"}, "no column 'auc'; the table has scheme, method, seed, figure"),
    ({"control": "erm/fixed"}, "control 'erm/fixed' is not a method of the table"),
    ({"level": 1.5}, "level 1.5: expected a number between 0 and 1"),
])
def test_bad_arguments_are_named(kwargs, message):
    args = {"figure": "figure", "methods": ["scheme", "method"], "blocks": ["seed"], **kwargs}
    with pytest.raises(ValueError, match=message):
        rank_test(table({"a/x": [1, 2, 3], "b/x": [2, 3, 4]}), **args)


def test_a_duplicate_row_and_too_few_blocks_are_errors():
    frame = table({"a/x": [1.0, 2.0], "b/x": [2.0, 3.0]})
    with pytest.raises(ValueError, match="method a/x has two rows for block '0'"):
        rank_test(pd.concat([frame, frame.iloc[:1]]), figure="figure",
                  methods=["scheme", "method"], blocks=["seed"])
    with pytest.raises(ValueError, match="needs at least 2 methods and 2 blocks"):
        rank_test(frame.iloc[[0, 2]], figure="figure", methods=["scheme", "method"],
                  blocks=["seed"])


def test_the_diagram_joins_the_methods_the_test_cannot_tell_apart():
    from biaslab.report.cd_diagram import cd_diagram, cliques

    assert cliques([1.0, 1.5, 2.9, 3.2], cd=1.0) == [(0, 1), (2, 3)]
    assert cliques([1.0, 1.5, 1.9, 2.6], cd=1.0) == [(0, 2), (2, 3)]
    assert cliques([1.0, 2.5, 4.0], cd=1.0) == []
    rng = np.random.default_rng(3)
    values = {f"m{j}/fixed": list(rng.normal(j * 0.3, 1, 8)) for j in range(5)}
    result = rank_test(table(values), figure="figure", methods=["scheme", "method"],
                       blocks=["seed"], control="m0/fixed")
    image = cd_diagram(result)
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and image == cd_diagram(result)  # same bytes again


def test_a_gap_is_ranked_by_its_distance_from_its_ideal():
    from biaslab.fairness.ranks import rank_methods, table_of

    frame = table({"none/fixed": [0.5, 0.6, 0.55, 0.62, 0.58, 0.51],
                   "none/equalized_odds": [0.9, 0.8, 0.85, 0.83, 0.87, 0.95]})
    frame["value"] = 0
    # the ratio's ideal is 1: 0.9 ... 0.95 is nearer to it on every block
    frame["s.disparate_impact"] = frame["figure"]
    result = rank_methods(frame, "s.disparate_impact", blocks=["value", "seed"])
    assert result.figure == "|log s.disparate_impact|" and not result.higher_is_better
    assert result.ranks["method"].iloc[0] == "none/equalized_odds"
    assert result.control == "none/fixed"
    rows = table_of(result).set_index("method")
    assert rows.loc["none/equalized_odds", "outcome"] == "better"
    assert np.isnan(rows.loc["none/fixed", "p"])
    with pytest.raises(ValueError, match="'s.groups' is not a figure to rank on"):
        rank_methods(frame.assign(**{"s.groups": "F M"}), "s.groups", blocks=["seed"])
