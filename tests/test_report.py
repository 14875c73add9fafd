"""The report says why a figure is missing or a model is not to be trusted."""

import numpy as np
import pandas as pd

from biaslab.report import _insufficient, build_report


def _grid(**extra):
    base = {"scheme": ["none", "none"], "method": ["fixed", "equalized_odds"],
            "balanced_accuracy": [0.9, np.nan], "s.groups": ["s=0:4;s=1:3"] * 2}
    return pd.DataFrame({**base, **extra})


def test_a_reason_shared_by_every_model_is_said_once():
    grid = _grid(**{"s.insufficient": ["tpr: 4 positives", "tpr: 4 positives"]})
    assert _insufficient(grid) == ["every model: s.insufficient: tpr: 4 positives"]
    grid = _grid(**{"s.insufficient": ["tpr: 4 positives", np.nan]})
    assert _insufficient(grid) == ["none / fixed: s.insufficient: tpr: 4 positives"]


def test_model_warnings_reach_the_page_escaped():
    grid = _grid(warning=["", "not applicable: group s=0 has one class <validation>"])
    per_group = pd.DataFrame({"scheme": ["none"], "method": ["fixed"], "set": ["test"],
                              "group": ["s=0"], "n": [4], "patients": [4], "positives": [1],
                              "negatives": [3]})
    prevalence = pd.DataFrame({"split": ["all"], "attribute": ["s"], "group": ["0"], "n": [4],
                               "prevalence": [0.25]})
    page = build_report(grid=grid, per_group=per_group, curves={}, prevalence=prevalence,
                        audit={"n": 4, "prevalence": 0.25, "splits": {}, "warnings": []},
                        groups=["s"])
    assert ("none / equalized_odds: not applicable: group s=0 has one class &lt;validation&gt;"
            in page)
    assert "<th>patients</th>" in page and "<th>negatives</th>" in page


def test_the_page_links_the_sweep_figure():
    per_group = pd.DataFrame({"scheme": ["none"], "method": ["fixed"], "set": ["test"],
                              "group": ["s=0"], "n": [4]})
    prevalence = pd.DataFrame({"split": ["all"], "attribute": ["s"], "group": ["0"], "n": [4],
                               "prevalence": [0.25]})
    page = build_report(grid=_grid(), per_group=per_group, curves={}, prevalence=prevalence,
                        audit={"n": 4, "prevalence": 0.25, "splits": {}, "warnings": []},
                        groups=["s"])
    assert 'href="sweep.png"' in page
