"""End-to-end: extreme bias (p0 = 0, p1 = 1, so S is the label) runs through, and says what it
cannot compute (issue 12, item 6).

Each group of S then holds one class: the per-group methods that need both classes in a group
are not applicable (a warning, and the reason in metrics/thresholds/SCHEME.json), per-group TPR
and FPR are undefined (NaN, with evaluate's warning), and the figures the seed study reads, the
flip rate and the shifted-test accuracy, are computed.
"""

import json
import re

import pandas as pd
import pytest

from tests.conftest import copy_repo, edit_params, sh

pytestmark = pytest.mark.slow

METHODS = ["fixed", "youden", "demographic_parity", "equal_opportunity", "equalized_odds"]
SKIPPED = ["equal_opportunity", "equalized_odds"]


def test_extreme_bias_runs_end_to_end(tiny_repo, tmp_path):
    repo = copy_repo(tiny_repo, tmp_path / "repo")
    edit_params(repo, bias={"p0": 0.0, "p1": 1.0}, postprocess={"methods": METHODS},
                weights={"schemes": ["none"]})
    proc = sh(repo, "dvc", "repro")  # fails the test, with the end of its output, if it fails
    said = proc.stdout + proc.stderr
    assert "Traceback" not in said

    fitted = json.loads((repo / "metrics/thresholds/none/seed0.json").read_text())
    assert list(fitted) == METHODS
    for method in SKIPPED:
        reason = fitted[method]["not_applicable"]
        assert re.match(r"group s=0 has (one class|no positive row) in the fit data \(\d+ rows, "
                        r"all label 0\): its TPR is undefined$", reason), reason
        assert f"postprocess@none-0: warning: {method} not applicable: {reason}" in said
    assert "threshold" in fitted["youden"] and "groups" in fitted["demographic_parity"]

    decisions = pd.read_parquet(repo / "data/decisions/none/seed0.parquet")
    assert list(decisions["method"].unique()) == ["fixed", "youden", "demographic_parity"]
    for rate in ("tpr is undefined for group s=0", "fpr is undefined for group s=1"):
        assert f"evaluate: warning: {rate}" in said

    grid = pd.read_csv(repo / "metrics/grid.csv").set_index("method")
    fitted_rows = grid.loc[["fixed", "youden", "demographic_parity"]]
    # what the seed study reads is there; what needs both classes in a group is missing
    read = fitted_rows[["flip_rate", "shifted.accuracy", "balanced_accuracy"]]
    assert read.notna().all(axis=None), read
    assert fitted_rows["s.equal_opportunity_difference"].isna().all()
    per_group = pd.read_csv(repo / "metrics/groups.csv")
    s0 = per_group[(per_group["set"] == "test") & (per_group["group"] == "s=0")]
    assert s0["tpr"].isna().all() and s0["fpr"].notna().all()
    assert (repo / "reports/index.html").is_file()
    # evaluate says why a skipped method has no figures, rather than leaving it out
    for method in SKIPPED:
        assert grid.loc[method, "warning"] == f"not applicable: {fitted[method]['not_applicable']}"
        assert not grid.loc[method, "pareto"]
