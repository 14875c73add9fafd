"""biaslab against the reference implementations: fairlearn 0.15 and AIF360 0.6.1."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import balanced_accuracy_score, precision_score, recall_score, roc_auc_score

from biaslab.fairness.bootstrap import auc_from_bins, score_bins
from biaslab.fairness.metrics import group_report
from biaslab.fairness.thresholds import make_postprocessor
from biaslab.fairness.weights import compute_weights

fairlearn_metrics = pytest.importorskip("fairlearn.metrics")
fairlearn_post = pytest.importorskip("fairlearn.postprocessing")


def _data(n=4000, groups=("a", "b", "c", "d"), seed=0):
    rng = np.random.default_rng(seed)
    g = rng.choice(np.array(groups, dtype=object), n)
    shift = pd.Series(g).map({k: i * 0.3 for i, k in enumerate(groups)}).to_numpy()
    y = (rng.random(n) < 0.3 + 0.1 * shift).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.8 * y - shift)))
    d = (scores >= 0.5).astype(int)
    return y, d, g, scores


def _fpr(y_true, y_pred):
    return fairlearn_metrics.false_positive_rate(y_true, y_pred)


@pytest.mark.parametrize("groups", [("a", "b"), ("a", "b", "c", "d")])
def test_per_group_metrics_match_fairlearn_metricframe(groups):
    y, d, g, scores = _data(groups=groups)
    mf = fairlearn_metrics.MetricFrame(
        metrics={"accuracy": lambda t, p: np.mean(t == p),
                 "balanced_accuracy": balanced_accuracy_score,
                 "tpr": recall_score, "fpr": _fpr, "ppv": precision_score,
                 "selection_rate": fairlearn_metrics.selection_rate},
        y_true=y, y_pred=d, sensitive_features=g)
    per_group, _ = group_report(y, d, g, scores=scores, n_boot=0, name="g")
    ours = per_group.set_index("group")
    for col in mf.by_group.columns:
        np.testing.assert_allclose(ours.loc[[f"g={k}" for k in groups], col],
                                   mf.by_group[col].to_numpy(), rtol=1e-12)
        assert ours.loc["all", col] == pytest.approx(mf.overall[col], rel=1e-12)
    auc = fairlearn_metrics.MetricFrame(metrics=roc_auc_score, y_true=y, y_pred=scores,
                                        sensitive_features=g)
    np.testing.assert_allclose(ours.loc[[f"g={k}" for k in groups], "auc"],
                               auc.by_group.to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("groups", [("a", "b"), ("a", "b", "c"), ("a", "b", "c", "d")])
def test_gaps_match_fairlearn(groups):
    y, d, g, scores = _data(groups=groups, seed=1)
    _, between = group_report(y, d, g, n_boot=0, name="g")
    value = between.set_index("metric")["value"]
    eqodds = fairlearn_metrics.equalized_odds_difference(y, d, sensitive_features=g)
    assert value["equalized_odds_difference"] == pytest.approx(eqodds, rel=1e-12)
    # DI and SPD: each group against the reference (the last in sorted order), the farthest
    # from parity, from fairlearn's per-group selection rates
    sel = fairlearn_metrics.MetricFrame(
        metrics=fairlearn_metrics.selection_rate, y_true=y, y_pred=d, sensitive_features=g
    ).by_group.sort_index()
    others, ref = sel.iloc[:-1], sel.iloc[-1]
    ratio, diff = others / ref, others - ref
    assert value["disparate_impact"] == pytest.approx(
        ratio[np.log(ratio).abs().idxmax()], rel=1e-12)
    assert value["statistical_parity_difference"] == pytest.approx(
        diff[diff.abs().idxmax()], rel=1e-12)
    if len(groups) == 2:  # the seed's signed definitions, g0 / g1 and g0 - g1 ...
        assert value["disparate_impact"] == pytest.approx(sel.iloc[0] / sel.iloc[1], rel=1e-12)
    # ... and fairlearn's unsigned min/max ratio and max - min bound them
    ratio_fl = fairlearn_metrics.demographic_parity_ratio(y, d, sensitive_features=g)
    diff_fl = fairlearn_metrics.demographic_parity_difference(y, d, sensitive_features=g)
    di = value["disparate_impact"]
    assert min(di, 1 / di) >= ratio_fl - 1e-12
    assert abs(value["statistical_parity_difference"]) <= diff_fl + 1e-12
    if len(groups) == 2:  # two groups: the same gap, up to its sign
        assert min(di, 1 / di) == pytest.approx(ratio_fl, rel=1e-12)
        assert abs(value["statistical_parity_difference"]) == pytest.approx(diff_fl, rel=1e-12)


@pytest.mark.parametrize(("method", "constraint"), [
    ("demographic_parity", "demographic_parity"),
    ("equal_opportunity", "true_positive_rate_parity"),
    ("equalized_odds", "equalized_odds"),
])
def test_group_thresholds_match_fairlearn_threshold_optimizer(method, constraint):
    """Same constraint, same objective (balanced accuracy): same quality, same parity."""

    class Scores(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            self.fitted_ = True
            return self

        def predict(self, X):
            return X[:, 0]

    y, _, g, scores = _data(n=6000, groups=("a", "b", "c"), seed=2)
    ours = make_postprocessor(method, seed=0).fit(scores, y, g).predict(scores, g)
    opt = fairlearn_post.ThresholdOptimizer(
        estimator=Scores().fit(scores[:, None], y), constraints=constraint, prefit=True,
        objective="balanced_accuracy_score", predict_method="predict")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.fit(scores[:, None], y, sensitive_features=g)
        theirs = opt.predict(scores[:, None], sensitive_features=g, random_state=0)
    assert balanced_accuracy_score(y, ours) == pytest.approx(
        balanced_accuracy_score(y, theirs), abs=0.015)
    for label, rate in ((None, "selection"), (1, "tpr"), (0, "fpr")):
        if rate == "fpr" and method != "equalized_odds":
            continue
        if rate == "tpr" and method == "demographic_parity":
            continue
        rows = np.ones(len(y), bool) if label is None else y == label
        ours_r = [ours[rows & (g == k)].mean() for k in "abc"]
        theirs_r = [theirs[rows & (g == k)].mean() for k in "abc"]
        # randomised decisions: both equal in expectation, a few points apart in a sample
        slack = 0.05 if method == "equalized_odds" else 0.01
        assert max(ours_r) - min(ours_r) <= max(slack, max(theirs_r) - min(theirs_r) + 0.01)


def test_binned_auc_is_close_to_sklearn():
    for seed in range(5):
        y, _, _, scores = _data(n=20_000, seed=seed)
        bins, n_bins = score_bins(scores, 256)
        pos = np.bincount(bins, weights=y, minlength=n_bins)
        neg = np.bincount(bins, weights=1 - y, minlength=n_bins)
        assert auc_from_bins(pos, neg) == pytest.approx(roc_auc_score(y, scores), abs=0.002)


# --- AIF360 ----------------------------------------------------------------------------------

def _aif_dataset(y, s, pred=None):
    from aif360.datasets import BinaryLabelDataset

    df = pd.DataFrame({"s": s.astype(float), "y": (y if pred is None else pred).astype(float)})
    return BinaryLabelDataset(df=df, label_names=["y"], protected_attribute_names=["s"],
                              favorable_label=1.0, unfavorable_label=0.0)


@pytest.fixture(scope="module")
def aif360():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("aif360")


PRIV, UNPRIV = [{"s": 1.0}], [{"s": 0.0}]


@pytest.mark.parametrize("seed", [0, 1])
def test_reweighing_matches_aif360(aif360, seed):
    from aif360.algorithms.preprocessing import Reweighing

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 1000)
    s = (rng.random(1000) < np.where(y == 1, 0.8, 0.3)).astype(int)
    ds = _aif_dataset(y, s)
    theirs = Reweighing(unprivileged_groups=UNPRIV, privileged_groups=PRIV).fit_transform(ds)
    ours = compute_weights(pd.DataFrame({"label": y, "s": s}), "reweighing", ["s"])
    w = theirs.instance_weights
    np.testing.assert_allclose(ours, w / w.mean(), rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaps_match_aif360_classification_metric(aif360, seed):
    from aif360.metrics import ClassificationMetric

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 3000)
    s = (rng.random(3000) < np.where(y == 1, 0.7, 0.4)).astype(int)
    d = (rng.random(3000) < np.where(y == 1, 0.6 + 0.2 * s, 0.2 + 0.1 * s)).astype(int)
    cm = ClassificationMetric(_aif_dataset(y, s), _aif_dataset(y, s, pred=d),
                              unprivileged_groups=UNPRIV, privileged_groups=PRIV)
    _, between = group_report(y, d, s, n_boot=0, name="s")
    value = between.set_index("metric")["value"]  # groups sorted: g0 = S=0 = unprivileged
    assert value["disparate_impact"] == pytest.approx(cm.disparate_impact(), rel=1e-12)
    assert value["statistical_parity_difference"] == pytest.approx(
        cm.statistical_parity_difference(), rel=1e-12)
    assert value["equal_opportunity_difference"] == pytest.approx(
        cm.equal_opportunity_difference(), rel=1e-12)
    assert value["average_odds_difference"] == pytest.approx(
        cm.average_odds_difference(), rel=1e-12)
