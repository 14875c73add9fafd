"""The verdict: each criterion passed, failed, not enough data or not measured, with the number,
its interval, the adjusted p-value and the group sizes behind it; warnings; the DVC metric."""

import numpy as np
import pandas as pd
import pytest

from biaslab.config import ConfigError, ReportConfig
from biaslab.fairness.verdict import (
    FAILED,
    NO_DATA,
    NOT_MEASURED,
    PASSED,
    Criterion,
    judge,
    metric,
    model_warnings,
    summarise,
)


def _grid(**columns):
    """Two pairs, the second recommended; one attribute s; figures given by ``columns``."""
    base = {"scheme": ["none", "reweighing"], "method": ["fixed", "fixed"],
            "recommended": [False, True], "degenerate": [False, False],
            "warning": [np.nan, np.nan], "s.groups": ["s=0:40;s=1:40"] * 2}
    return pd.DataFrame({**base, **columns})


def _groups(positives=(20, 20), patients=(40, 40), seeds=(None,)):
    rows = []
    for seed in seeds:
        for scheme in ("none", "reweighing"):
            for i, group in enumerate(("s=0", "s=1")):
                rows.append({"scheme": scheme, "method": "fixed", "set": "test",
                             "attribute": "s", "group": group, "n": 40,
                             "patients": patients[i], "positives": positives[i],
                             "negatives": 40 - positives[i], "seed": seed})
            rows.append({"scheme": scheme, "method": "fixed", "set": "test", "attribute": "all",
                         "group": "all", "n": 80, "patients": sum(patients),
                         "positives": sum(positives), "negatives": 80 - sum(positives),
                         "seed": seed})
    table = pd.DataFrame(rows)
    return table.drop(columns="seed") if seeds == (None,) else table


DI = Criterion("disparate_impact", min=0.8, max=1.25)


def test_each_pair_is_judged_the_recommended_first_with_its_numbers():
    grid = _grid(**{"s.disparate_impact": [0.5, 0.9], "s.disparate_impact_lo": [0.4, 0.85],
                    "s.disparate_impact_hi": [0.6, 0.95], "s.disparate_impact_p_adj": [0.01, 0.6]})
    verdict = judge(grid, _groups(positives=(5, 30)), [DI], unit="patients")
    assert verdict["scheme"].tolist() == ["reweighing", "none"]
    top = verdict.iloc[0]
    assert (top.status, top.value, top.lo, top.hi, top.p_adj) == (PASSED, 0.9, 0.85, 0.95, 0.6)
    assert top.recommended and top.criterion == "s.disparate_impact" and top.attribute == "s"
    assert top.groups == ("s=0: 40 patients, 5 positives, 35 negatives; "
                          "s=1: 40 patients, 30 positives, 10 negatives")
    assert (top.min_patients, top.min_positives, top.min_negatives) == (40, 5, 10)
    assert verdict.iloc[1].status == FAILED


@pytest.mark.parametrize(("value", "lo", "hi", "status"), [
    (1.0, 0.9, 1.1, PASSED),        # interval within the bounds
    (1.0, 0.7, 1.1, NO_DATA),       # crosses 0.8
    (0.5, 0.4, 0.6, FAILED),        # wholly below
    (1.5, 1.3, 1.7, FAILED),        # wholly above
    (1.0, np.nan, np.nan, NO_DATA),  # no interval (n_boot = 0)
])
def test_require_interval_judges_by_the_interval(value, lo, hi, status):
    grid = _grid(**{"s.disparate_impact": [value] * 2, "s.disparate_impact_lo": [lo] * 2,
                    "s.disparate_impact_hi": [hi] * 2})
    criterion = Criterion("disparate_impact", min=0.8, max=1.25, require_interval=True)
    assert judge(grid, _groups(), [criterion])["status"].tolist() == [status] * 2


@pytest.mark.parametrize(("lo", "hi", "status"), [
    (-0.05, 0.08, PASSED),   # |x| in [0, 0.08]
    (-0.2, 0.05, NO_DATA),   # |x| in [0, 0.2]: crosses 0.1
    (-0.4, -0.2, FAILED),    # |x| in [0.2, 0.4]
])
def test_abs_takes_the_interval_of_the_absolute_value(lo, hi, status):
    grid = _grid(**{"s.equal_opportunity_difference": [(lo + hi) / 2] * 2,
                    "s.equal_opportunity_difference_lo": [lo] * 2,
                    "s.equal_opportunity_difference_hi": [hi] * 2})
    criterion = Criterion("equal_opportunity_difference", max=0.1, abs=True,
                          require_interval=True)
    assert judge(grid, _groups(), [criterion])["status"].iloc[0] == status


@pytest.mark.parametrize(("p_adj", "status"), [(0.01, FAILED), (0.3, NO_DATA),
                                               (np.nan, NO_DATA)])
def test_alpha_fails_a_gap_only_when_it_is_unlikely_to_be_chance(p_adj, status):
    grid = _grid(**{"s.disparate_impact": [0.5] * 2, "s.disparate_impact_p_adj": [p_adj] * 2})
    criterion = Criterion("disparate_impact", min=0.8, max=1.25, alpha=0.05)
    row = judge(grid, _groups(), [criterion]).iloc[0]
    assert row.status == status
    if status == NO_DATA:
        assert "p-value" in row.reason


def test_a_missing_figure_says_why_and_an_absent_one_is_not_measured():
    grid = _grid(**{"s.equal_opportunity_difference": [np.nan] * 2,
                    "s.insufficient": ["equal_opportunity_difference: s=0 has 4 positives "
                                       "(< evaluate.min_cell = 5); auc_gap, average_odds_"
                                       "difference: s=1 has 3 negatives"] * 2})
    verdict = judge(grid, _groups(), [Criterion("equal_opportunity_difference", max=0.1,
                                                abs=True), Criterion("flip_rate", max=0.05)])
    eod, flip = verdict.iloc[0], verdict.iloc[1]
    assert (eod.status, eod.reason) == (NO_DATA, "s=0 has 4 positives (< evaluate.min_cell = 5)")
    assert flip.status == NOT_MEASURED and "no injected bias" in flip.reason
    assert flip.attribute == "" and flip.groups.startswith("all: 80 units")


def test_a_gap_is_judged_for_every_attribute_or_those_named():
    grid = _grid(**{"s.disparate_impact": [1.0] * 2, "sex.disparate_impact": [0.5] * 2,
                    "sex.groups": ["sex=F:40;sex=M:40"] * 2})
    verdict = judge(grid, _groups(), [Criterion("disparate_impact", min=0.8, name="di")])
    assert verdict["criterion"].tolist()[:2] == ["di.s", "di.sex"]
    assert verdict["status"].tolist()[:2] == [PASSED, FAILED]
    only = judge(grid, _groups(), [Criterion("disparate_impact", min=0.8, attributes=["sex"],
                                             name="di")])
    assert only["criterion"].tolist() == ["di", "di"] and set(only["attribute"]) == {"sex"}


def test_group_sizes_are_read_once_whatever_the_seeds():
    grid = _grid(**{"s.disparate_impact": [1.0] * 2})
    one = judge(grid, _groups(), [DI])
    seeded = judge(grid, _groups(seeds=(0, 1, 2)), [DI])
    assert seeded["groups"].tolist() == one["groups"].tolist()


def test_a_degenerate_model_fails_whatever_its_gaps():
    grid = _grid(**{"s.disparate_impact": [1.0] * 2, "degenerate": [False, True],
                    "warning": [np.nan, "constant decisions on the test split (all 1)"]})
    verdict = judge(grid, _groups(), [DI])
    summary = summarise(verdict, grid).set_index("scheme")
    assert verdict["status"].tolist() == [PASSED, PASSED]  # DI of a constant model is 1
    assert summary.loc["reweighing", "verdict"] == FAILED
    assert "constant decisions" in summary.loc["reweighing", "reason"]
    assert summary.loc["none", "verdict"] == PASSED


def test_summary_counts_and_says_what_failed():
    grid = _grid(**{"s.disparate_impact": [0.5, np.nan], "flip_rate": [0.01, 0.01]})
    verdict = judge(grid, _groups(), [DI, Criterion("flip_rate", max=0.05)])
    summary = summarise(verdict, grid).set_index("scheme")
    assert summary.loc["reweighing", "verdict"] == NO_DATA
    assert summary.loc["none", "verdict"] == FAILED
    assert summary.loc["none", "reason"] == ("failed: s.disparate_impact = 0.5 (expected "
                                             "0.8 <= x <= 1.25)")
    assert summary.loc["none", ["passed", "failed", "not_enough_data"]].tolist() == [1, 1, 0]


def test_warnings_name_degenerate_models_methods_not_applicable_and_small_groups():
    grid = _grid(degenerate=[True, False],
                 warning=["AUC 0.510 [0.40, 0.62] does not exclude chance (0.5)",
                          "not applicable: group s=0 has one class"])
    warnings = model_warnings(grid, _groups(positives=(4, 20), patients=(40, 12)),
                              min_group_size=30, min_class_size=10, unit="patients")
    assert warnings["kind"].tolist() == ["degenerate", "not applicable", "small group",
                                         "small group"]
    assert "does not exclude chance" in warnings["message"].iloc[0]
    assert warnings["message"].iloc[2].startswith("test group s=0 has only 4 positives")
    assert warnings["message"].iloc[3].startswith("test group s=1 has only 12 patients")
    assert warnings["scheme"].iloc[2] == ""  # test groups are the same for every pair
    # without patient ids the units are the images, and the warning says so
    images = model_warnings(grid, _groups(positives=(20, 20), patients=(40, 12)),
                            min_group_size=30, min_class_size=10, unit="images")
    assert images["message"].iloc[2].startswith("test group s=1 has only 12 images (")


@pytest.mark.parametrize(("unit", "patients", "text"), [
    ("patients", (40, 12), "s=0: 40 patients, 20 positives, 20 negatives; "
                           "s=1: 40 images of 12 patients, 20 positives, 20 negatives"),
    ("units", (40, 12), "s=0: 40 units, 20 positives, 20 negatives; "
                        "s=1: 40 images of 12 units, 20 positives, 20 negatives"),
    ("images", (40, 40), "s=0: 40 images, 20 positives, 20 negatives; "
                         "s=1: 40 images, 20 positives, 20 negatives"),
])
def test_group_sizes_name_the_units_of_the_index(unit, patients, text):
    verdict = judge(_grid(**{"s.disparate_impact": [0.9, 0.9]}), _groups(patients=patients),
                    [DI], unit=unit)
    assert verdict["groups"].iloc[0] == text


def test_the_metric_is_the_recommended_pairs_short_verdict():
    grid = _grid(**{"s.disparate_impact": [0.5, 0.9123456], "flip_rate": [0.3, np.nan]})
    verdict = judge(grid, _groups(), [DI, Criterion("flip_rate", max=0.05, name="flip")])
    out = metric(verdict, summarise(verdict, grid))
    assert out == {"pair": "reweighing/fixed", "verdict": NO_DATA,
                   "s.disparate_impact": {"status": PASSED, "value": 0.9123},
                   "flip": {"status": NO_DATA, "value": None}}


def test_a_criterion_needs_a_bound():
    with pytest.raises(ValueError, match="no bound"):
        Criterion("flip_rate")


# ------------------------------------------------------------------ report.criteria

def test_the_default_criteria():
    figures = [(c.figure, c.min, c.max, c.abs) for c in ReportConfig().criteria]
    assert figures == [("excess_disparate_impact", 0.8, 1.25, False),
                       ("equal_opportunity_difference", None, 0.1, True),
                       ("flip_rate", None, 0.05, False)]


@pytest.mark.parametrize(("criteria", "message"), [
    ([{"figure": "flip_rat", "max": 0.1}],
     "report.criteria[0].figure = 'flip_rat' is not allowed; expected one of accuracy"),
    ([{"figure": "flip_rate"}], "report.criteria[0].max = None is not allowed; expected a bound"),
    ([{"figure": "flip_rate", "max": 0.1}, {"figure": "auc", "max": 1, "maxx": 1}],
     "report.criteria[1].maxx = 1 is not allowed; expected a key of a criterion (did you mean "
     "max?)"),
    ([{"figure": "flip_rate", "max": "0.1"}],
     "report.criteria[0].max = '0.1' is not allowed; expected a value of type float | null"),
    ([{"figure": "flip_rate", "max": 0.1, "alpha": 0.05}],
     "report.criteria[0].alpha = 0.05 is not allowed; expected null: only gaps"),
    ([{"figure": "disparate_impact", "min": 1.25, "max": 0.8}],
     "report.criteria[0].max = 0.8 is not allowed; expected min <= max"),
    ([{"figure": "disparate_impact", "min": 0.8, "alpha": 2.0}],
     "report.criteria[0].alpha = 2.0 is not allowed; expected a probability in [0, 1]"),
    ([{"figure": "flip_rate", "max": 0.1, "attributes": ["s"]}],
     "report.criteria[0].attributes = ['s'] is not allowed; expected a non-empty list, for a "
     "gap"),
    ([{"figure": "auc", "min": 0.7, "name": "a"}, {"figure": "flip_rate", "max": 1, "name": "a"}],
     "report.criteria[1].name = 'a' is not allowed; expected a name no other criterion has"),
    ([{"figure": "auc", "min": 0.7, "name": "verdict"}],
     "report.criteria[0].name = 'verdict' is not allowed; expected a name other than pair"),
    ([3], "report.criteria[0] = 3 is not allowed; expected a mapping"),
    ("x", "report.criteria = 'x' is not allowed; expected a list of criteria"),
])
def test_a_bad_criterion_is_named_with_what_is_allowed(criteria, message):
    with pytest.raises(ConfigError) as err:
        ReportConfig(criteria=criteria)
    assert str(err.value).startswith(f"params.yaml: {message}")


def test_the_stage_hands_config_criteria_to_the_library():
    config = ReportConfig(criteria=[{"figure": "disparate_impact", "min": 0.8, "max": 1.25,
                                     "attributes": ["s"], "require_interval": True,
                                     "alpha": 0.05, "name": "di"}])
    criterion = Criterion(**config.criteria[0].model_dump())
    assert criterion.bounds() == "0.8 <= x <= 1.25" and criterion.alpha == 0.05
