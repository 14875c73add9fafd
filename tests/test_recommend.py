"""The recommended (scheme, method): its fairness cost, a gap whose ideal the labels allow
(biaslab.fairness.costs), and never a pair another beats on accuracy and every error-rate gap
(biaslab.fairness.recommend), on decisions fitted by the real threshold methods."""

import numpy as np
import pandas as pd
import pytest

from biaslab.config.fairness import PARETO_GAPS, EvaluateConfig
from biaslab.fairness.costs import (
    ERROR_RATE_GAPS,
    RATIO_GAPS,
    RAW_GAPS,
    cost_text,
    fairness_cost,
    raw_gap_warning,
)
from biaslab.fairness.evaluate import evaluate_decisions
from biaslab.fairness.metrics import GAPS, gaps, rates
from biaslab.fairness.recommend import dominated_by, recommend, why_recommended
from biaslab.fairness.thresholds import decide_methods
from tests.conftest import SHARED

METHODS = ["fixed", "youden", "demographic_parity", "equalized_odds"]
DEFAULT_GAP = EvaluateConfig().pareto_gap


def _perfect_cells(prevalence: list[float], n: int = 1000) -> np.ndarray:
    """Cell counts (groups, 8) of a perfect classifier (ŷ = y) on groups of ``n`` images."""
    counts = np.zeros((len(prevalence), 8))
    for g, p in enumerate(prevalence):
        counts[g, 3] = round(n * p)  # y = 1, ŷ = 1
        counts[g, 0] = n - counts[g, 3]  # y = 0, ŷ = 0
    return counts


def test_a_perfect_classifier_pays_no_cost_but_on_the_raw_parity_gaps():
    figures = gaps({**rates(_perfect_cells([0.3, 0.6])), "auc": np.array([1.0, 1.0])})
    for gap in PARETO_GAPS:
        cost = fairness_cost(pd.Series([figures[gap]]), gap)[0]
        if gap in RAW_GAPS:  # the labels' own disparity: DI 0.5, SPD -0.3
            assert cost == pytest.approx(np.log(2) if gap in RATIO_GAPS else 0.3)
        else:
            assert cost == pytest.approx(0, abs=1e-12), gap
    assert set(ERROR_RATE_GAPS) <= set(PARETO_GAPS) <= set(GAPS)
    assert DEFAULT_GAP in ERROR_RATE_GAPS


def test_each_cost_is_the_distance_from_the_ideal_either_side():
    assert fairness_cost(pd.Series([0.8, 1.25]), "excess_disparate_impact") == pytest.approx(
        [np.log(1.25)] * 2)
    np.testing.assert_allclose(fairness_cost(pd.Series([0.9, 1.0]),
                                             "worst_group_balanced_accuracy"), [0.1, 0.0])
    np.testing.assert_allclose(fairness_cost(pd.Series([-0.2, 0.2]), DEFAULT_GAP), [0.2, 0.2])
    assert cost_text("sex.disparate_impact") == "|log sex.disparate_impact|"
    assert cost_text("s.worst_group_balanced_accuracy") == "1 - s.worst_group_balanced_accuracy"
    assert cost_text("s.equalized_odds_difference") == "|s.equalized_odds_difference|"


def _grid(**columns) -> pd.DataFrame:
    """Three pairs of scheme none with validation figures given by ``columns``."""
    base = {"scheme": ["none"] * 3, "method": ["fixed", "demographic_parity", "youden"],
            "degenerate": [False] * 3}
    return pd.DataFrame(base | columns)


def test_a_pair_beaten_on_accuracy_and_no_better_on_any_error_rate_gap_is_dominated():
    grid = _grid(**{"val.balanced_accuracy": [1.0, 0.99, 0.995],
                    "val.fairness_cost": [0.08, 0.0, 0.05],
                    "val.s.equalized_odds_difference": [0.0, 0.06, 0.0],
                    "val.s.worst_group_balanced_accuracy": [1.0, 0.97, 0.99]})
    assert dominated_by(grid).tolist() == ["", "none/fixed", "none/fixed"]
    # better on one error-rate gap than the more accurate pair: not dominated
    fairer = grid.assign(**{"val.s.equalized_odds_difference": [0.02, 0.01, 0.03]})
    assert dominated_by(fairer).tolist() == ["", "", "none/fixed"]
    # a gap missing in either pair tells nothing; no error-rate gap at all: nothing dominated
    unknown = grid.assign(**{"val.s.equalized_odds_difference": [np.nan, 0.06, 0.0]})
    assert dominated_by(unknown).tolist() == ["", "none/youden", ""]
    assert dominated_by(grid[["scheme", "method", "val.balanced_accuracy",
                              "val.fairness_cost"]]).tolist() == ["", "", ""]
    # the front alone would take the cheapest pair within 0.02; the eligible pairs, not it
    score, cost = grid["val.balanced_accuracy"], grid["val.fairness_cost"]
    assert recommend(score, cost, 0.02).tolist() == [False, True, False]
    eligible = (dominated_by(grid) == "").to_numpy()
    assert recommend(score, cost, 0.02, eligible=eligible).tolist() == [True, False, False]


def _predictions(n: int, prevalence: dict, seed: int, *, shortcut: float = 0.0,
                 signal: float = 6.0) -> pd.DataFrame:
    """Validation and test rows of one model's scores: ``prevalence`` per group of ``sex``;
    the score reads the label through ``signal`` (6: separates the classes perfectly) and an
    injected bias S (P(S=1 | y) = 0.3 / 0.7) with weight ``shortcut``, with the
    counterfactual scores under S forced to 0 and 1."""
    rng = np.random.default_rng(seed)
    groups = np.array(sorted(prevalence))
    sex = groups[rng.integers(0, len(groups), n)]
    label = (rng.random(n) < np.vectorize(prevalence.get)(sex)).astype(np.int8)
    s = (rng.random(n) < np.where(label == 1, 0.7, 0.3)).astype(np.int8)
    noise = rng.uniform(-1, 1, n) if signal >= 6 else rng.normal(0, 1, n)

    def score(s_value):
        logit = signal * (label - 0.5) + noise + shortcut * (s_value - 0.5)
        return 1 / (1 + np.exp(-logit))

    return pd.DataFrame({"row": np.arange(n), "split": np.where(np.arange(n) % 2, "val", "test"),
                         "label": label, "sex": sex, "s": s, "score": score(s),
                         "score_s0": score(0), "score_s1": score(1)})


def _decisions(predictions: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    val, test = (predictions[predictions["split"] == part] for part in ("val", "test"))
    decisions, _ = decide_methods(METHODS, val, test, groups)
    return decisions


# the NIH case in small: groups by sex whose prevalences differ by a few points, a model that
# separates the classes perfectly; demographic parity costs less than 0.02 balanced accuracy
UNEQUAL = {"F": 0.43, "M": 0.47}


@pytest.fixture(scope="module")
def perfect():
    predictions = _predictions(40_000, UNEQUAL, seed=0)
    attributes = predictions[["row", "label", "sex", "s"]]
    return {"none": _decisions(predictions, ["sex"])}, attributes


@pytest.mark.parametrize("gap", PARETO_GAPS)
def test_a_perfect_scorer_with_unequal_base_rates_is_recommended_as_it_is(perfect, gap):
    decisions, attributes = perfect
    grid, _ = evaluate_decisions(decisions, attributes, ["sex"], n_boot=0, pareto_gap=gap)
    g = grid.set_index("method")
    assert g.loc["fixed", "balanced_accuracy"] == 1 and g.loc["fixed",
                                                              "sex.equalized_odds_difference"] == 0
    parity = g.loc["demographic_parity"]
    assert 0.98 < parity["val.balanced_accuracy"] < 1  # within evaluate.max_accuracy_loss
    assert g.loc[g["recommended"]].index.tolist() == ["fixed"]  # the first of the perfect pairs
    if gap == "disparate_impact":  # the raw DI prefers parity; the domination rule does not
        assert parity["val.fairness_cost"] < g.loc["fixed", "val.fairness_cost"]
        assert parity["pareto"] and parity["dominated_by"] in ("none/fixed", "none/youden")
        assert recommend(grid["val.balanced_accuracy"], grid["val.fairness_cost"],
                         0.02)[grid["method"].eq("demographic_parity")].all()


def test_the_report_says_why_and_warns_of_the_raw_disparate_impact(perfect):
    decisions, attributes = perfect
    grid, _ = evaluate_decisions(decisions, attributes, ["sex"], n_boot=200,
                                 pareto_gap="disparate_impact")
    text = raw_gap_warning(grid, "sex.disparate_impact")
    base = grid["sex.base_disparate_impact"].iloc[0]
    assert base < grid["sex.base_disparate_impact_hi"].iloc[0] < 1  # the interval excludes 1
    assert text.startswith("evaluate.pareto_gap = disparate_impact compares selection rates, "
                           f"and the groups of sex differ in base rate: sex.base_disparate_"
                           f"impact = {base:.3g} [")
    assert f"a perfect classifier would pay a fairness cost of {abs(np.log(base)):.3g}" in text
    # the cost a perfect classifier meets, or a run without intervals: nothing to say
    assert raw_gap_warning(grid, "sex.equalized_odds_difference") == ""
    assert raw_gap_warning(grid, "sex.excess_disparate_impact") == ""
    no_interval, _ = evaluate_decisions(decisions, attributes, ["sex"], n_boot=0)
    assert raw_gap_warning(no_interval, "sex.disparate_impact") == ""
    fixed = grid.set_index("method").loc["fixed"]
    assert why_recommended(grid, "sex.disparate_impact", 0.02) == (
        "The baseline none/fixed is recommended: on validation it has balanced accuracy 1.000 "
        f"and fairness cost |log sex.disparate_impact| {fixed['val.fairness_cost']:.3f}, and no "
        "other pair of the Pareto front within evaluate.max_accuracy_loss = 0.02 of the best "
        "balanced accuracy (1.000) costs less, except none/demographic_parity, which "
        "none/fixed beats on balanced accuracy while being no worse on any error-rate gap.")


@pytest.fixture(scope="module")
def shortcut():
    """Scheme none learnt the injected bias S (it weighs S as much as the image); reweighing
    learnt the image."""
    equal = {"F": 0.5, "M": 0.5}
    models = {"none": _predictions(6000, equal, seed=1, shortcut=4.0, signal=2.0),
              "reweighing": _predictions(6000, equal, seed=1, shortcut=0.5, signal=3.0)}
    attributes = models["none"][["row", "label", "sex", "s"]]
    return {k: _decisions(v, ["s"]) for k, v in models.items()}, attributes


@pytest.mark.parametrize("gap", [DEFAULT_GAP, "excess_disparate_impact"])
def test_on_a_learnt_shortcut_the_recommendation_lowers_the_flip_rate_and_excess_di(shortcut,
                                                                                   gap):
    decisions, attributes = shortcut
    grid, _ = evaluate_decisions(decisions, attributes, ["s"], n_boot=0, pareto_gap=gap)
    pick = grid[grid["recommended"]].iloc[0]
    base = grid[(grid["scheme"] == "none") & (grid["method"] == "fixed")].iloc[0]
    assert base["flip_rate"] > 0.1  # the baseline leans on S
    assert (pick["scheme"], pick["method"]) != ("none", "fixed")
    assert pick["flip_rate"] < base["flip_rate"] / 2
    assert abs(np.log(pick["s.excess_disparate_impact"])) < abs(
        np.log(base["s.excess_disparate_impact"]))
    why = why_recommended(grid, f"s.{gap}", 0.02)
    assert why.startswith(f"{pick['scheme']}/{pick['method']} is recommended over the baseline "
                          "none/fixed: on validation it has balanced accuracy "
                          f"{pick['val.balanced_accuracy']:.3f} and fairness cost "
                          f"{cost_text(f's.{gap}')} {pick['val.fairness_cost']:.3f}, the "
                          f"baseline {base['val.balanced_accuracy']:.3f} and "
                          f"{base['val.fairness_cost']:.3f}; ")



def test_the_sweep_the_verdict_and_the_cost_read_the_same_figures(shortcut):
    from biaslab.config.report import ReportConfig
    from biaslab.fairness.verdict import Criterion, judge
    from biaslab.sweep import table as sw
    from biaslab.sweep.figure import plotted_figures, sweep_figure

    decisions, attributes = shortcut
    grid, groups = evaluate_decisions(decisions, attributes, ["s"], n_boot=50,
                                      pareto_gap="excess_disparate_impact")
    plan = sw.plan(sw.BIAS_STRENGTH, ["0.2"], [0], prefix="same")
    table = sw.sweep_table(plan, {plan[0].name: sw.Outcome("success", "a" * 40, {})},
                           {plan[0].name: grid}, param=sw.BIAS_STRENGTH)
    excess = "s.excess_disparate_impact"
    # the sweep plots grid.csv's excess DI, the one the cost is computed from
    assert excess in plotted_figures(table.columns)
    np.testing.assert_array_equal(table[excess], grid[excess])
    with np.errstate(divide="ignore"):  # none/youden never selects S=0: excess DI 0, cost inf
        np.testing.assert_allclose(grid["fairness_cost"], np.abs(np.log(grid[excess])))
    # the verdict's default criterion judges the same column, with bounds symmetric on the log
    # scale the cost reads it on (0.8 is as far from parity as 1.25)
    criterion = next(c for c in ReportConfig().criteria if c.figure == "excess_disparate_impact")
    assert fairness_cost(pd.Series([criterion.min]), criterion.figure) == pytest.approx(
        fairness_cost(pd.Series([criterion.max]), criterion.figure))
    verdict = judge(grid, groups, [Criterion(**criterion.model_dump())])
    judged = verdict.set_index(["scheme", "method"])["value"]
    np.testing.assert_array_equal(judged.loc[list(zip(grid["scheme"], grid["method"],
                                                      strict=True))], grid[excess])
    # the sweep's parity line: at 1 on the ratios (DI, excess DI) only
    for ax in sweep_figure(table).axes:
        if ax.get_visible():
            at_one = any(list(line.get_ydata()) == [1.0, 1.0] for line in ax.get_lines())
            assert at_one == ("DI" in ax.get_title()), ax.get_title()


NIH_TABLE = SHARED / "data" / "nih_metadata" / "Data_Entry_2017_v2020.csv.gz"


@pytest.mark.slow
@pytest.mark.skipif(not NIH_TABLE.exists(), reason=f"real NIH table not available at {NIH_TABLE}")
@pytest.mark.parametrize("gap", [DEFAULT_GAP, "disparate_impact"])
def test_on_the_real_nih_table_a_perfect_model_is_recommended(gap):
    """The NIH case: the real table's labels, patients and sexes (F 45.8 % positive, M 46.4 %),
    split by patient as the pipeline does; scores of stand-in images a model separates
    perfectly. Groups by sex: the unconstrained model is recommended, whatever the cost, not
    demographic parity."""
    from biaslab.data.sources.nih import nih_index, read_nih_table
    from biaslab.data.split import stratified_split

    index, _ = nih_index(read_nih_table(NIH_TABLE), finding="any", views=[], age_bins=[40, 60, 80])
    index.insert(0, "row", np.arange(len(index)))
    split = stratified_split(index, {"train": 0.6, "val": 0.2, "test": 0.2}, ["label", "sex"],
                             seed=0, min_stratum=5)["split"].to_numpy()
    rows = index[split != "train"].assign(split=split[split != "train"])
    noise = np.random.default_rng(0).uniform(-1, 1, len(rows))
    rows["score"] = 1 / (1 + np.exp(-(6 * (rows["label"] - 0.5) + noise)))
    decisions = {"none": _decisions(rows, ["sex"])}
    grid, _ = evaluate_decisions(decisions, rows[["row", "label", "sex", "patient_id"]],
                                 ["sex"], n_boot=200, pareto_gap=gap)
    g = grid.set_index("method")
    assert g.loc["fixed", "balanced_accuracy"] == 1
    assert g.loc["fixed", "sex.excess_disparate_impact"] == pytest.approx(1)
    assert g.loc["demographic_parity", "sex.equalized_odds_difference"] > 0
    assert g.loc[g["recommended"]].index.tolist() == ["fixed"]
    if gap == "disparate_impact":  # what the issue saw: the front alone would pick parity
        assert recommend(grid["val.balanced_accuracy"], grid["val.fairness_cost"],
                         0.02)[grid["method"].eq("demographic_parity")].all()
        assert g.loc["demographic_parity", "dominated_by"] in ("none/fixed", "none/youden")
    assert why_recommended(grid, f"sex.{gap}", 0.02).startswith(
        "The baseline none/fixed is recommended: on validation it has balanced accuracy 1.000")


def test_the_baseline_is_the_unweighted_model_at_its_own_threshold_wherever_it_is():
    from biaslab.fairness.headline import headline
    from biaslab.fairness.recommend import baseline_row

    grid = pd.DataFrame({"scheme": ["reweighing", "none", "none"],
                         "method": ["fixed", "youden", "fixed"],
                         "balanced_accuracy": [0.9, 0.8, 0.7], "recommended": [True, False, False]})
    assert baseline_row(grid)["balanced_accuracy"].item() == 0.7
    assert headline(grid, ["s"])["baseline"] == {"pair": "none/fixed", "balanced_accuracy": 0.7}
    # without it, the grid's first pair
    assert baseline_row(grid.iloc[:2])["method"].item() == "fixed"
