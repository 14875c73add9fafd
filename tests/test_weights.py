"""biaslab.fairness.weights: per-row training weights, mean 1, with the property each scheme
promises."""

import numpy as np
import pandas as pd
import pytest

from biaslab.config import SCHEMES
from biaslab.fairness.weights import compute_weights, sample_order


def _train(n=600, seed=0, p0=0.2, p1=0.8, n_sex=1):
    """A training table where s depends strongly on the label (the biased setting)."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.35).astype(int)
    s = (rng.random(n) < np.where(label == 1, p1, p0)).astype(int)
    table = pd.DataFrame({"row": np.arange(n), "label": label, "s": s})
    if n_sex > 1:
        table["sex"] = rng.choice(["F", "M", "X"][:n_sex], n)
    return table


def _group_key(train, groups):
    return train[groups].astype(str).agg("|".join, axis=1)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_scheme_has_mean_one_and_positive_finite_weights(scheme, seed):
    train = _train(seed=seed).assign(w_col=lambda t: 1.0 + t["row"] % 3)
    w = compute_weights(train, scheme, ["s"], column="w_col")
    assert w.shape == (len(train),)
    assert w.dtype == np.float64
    assert np.isfinite(w).all() and (w >= 0).all()
    assert (w > 0).all() or scheme == "undersample"  # undersampling drops rows: weight 0
    assert w.mean() == pytest.approx(1.0, abs=1e-12)


def test_none_is_all_ones():
    np.testing.assert_array_equal(compute_weights(_train(), "none", ["s"]), 1.0)


@pytest.mark.parametrize("groups", [["s"], ["s", "sex"]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reweighing_makes_label_independent_of_group(groups, seed):
    train = _train(seed=seed, n_sex=3)
    w = compute_weights(train, "reweighing", groups)
    g = _group_key(train, groups)
    assert g.nunique() == (2 if groups == ["s"] else 6)
    y = train["label"].to_numpy()
    overall = np.sum(w * y) / np.sum(w)
    for key in g.unique():
        m = (g == key).to_numpy()
        assert np.sum(w[m] * y[m]) / np.sum(w[m]) == pytest.approx(overall, abs=1e-9)
    # and the groups keep their share of the data: P_w(g) = P(g)
    for key in g.unique():
        m = (g == key).to_numpy()
        assert w[m].sum() / w.sum() == pytest.approx(m.mean(), abs=1e-9)
    # under the weights the overall positive rate is unchanged
    assert overall == pytest.approx(y.mean(), abs=1e-9)


def test_reweighing_formula_by_hand():
    # s=0: 3 negatives, 1 positive; s=1: 1 negative, 3 positives (n = 8)
    train = pd.DataFrame({"label": [0, 0, 0, 1, 0, 1, 1, 1], "s": [0, 0, 0, 0, 1, 1, 1, 1]})
    w = compute_weights(train, "reweighing", ["s"])
    # w = P(g) P(y) / P(g, y): (1/2 * 1/2) / (3/8) = 2/3 for the majority cells, 2 for the others
    np.testing.assert_allclose(w, [2 / 3, 2 / 3, 2 / 3, 2, 2, 2 / 3, 2 / 3, 2 / 3])


def test_class_balanced_equalises_class_totals():
    train = _train()
    w = compute_weights(train, "class_balanced", ["s"])
    y = train["label"].to_numpy()
    assert w[y == 0].sum() == pytest.approx(w[y == 1].sum(), rel=1e-12)
    # constant within a class
    assert np.ptp(w[y == 0]) < 1e-12 and np.ptp(w[y == 1]) < 1e-12


@pytest.mark.parametrize("groups", [["s"], ["s", "sex"]])
def test_group_balanced_equalises_group_totals(groups):
    train = _train(n_sex=3)
    w = compute_weights(train, "group_balanced", groups)
    totals = pd.Series(w).groupby(_group_key(train, groups).to_numpy()).sum()
    np.testing.assert_allclose(totals, totals.iloc[0], rtol=1e-12)


@pytest.mark.parametrize("groups", [["s"], ["s", "sex"]])
def test_group_class_balanced_equalises_every_cell(groups):
    train = _train(n_sex=2)
    w = compute_weights(train, "group_class_balanced", groups)
    cells = _group_key(train, groups + ["label"]).to_numpy()
    totals = pd.Series(w).groupby(cells).sum()
    assert len(totals) == (4 if groups == ["s"] else 8)
    np.testing.assert_allclose(totals, len(train) / len(totals), rtol=1e-12)


def test_weights_follow_row_order_not_grouping_order():
    train = _train(200)
    w = compute_weights(train, "reweighing", ["s"])
    perm = np.random.default_rng(3).permutation(len(train))
    np.testing.assert_allclose(compute_weights(train.iloc[perm], "reweighing", ["s"]), w[perm])


@pytest.mark.parametrize(
    "scheme", ["group_balanced", "group_class_balanced", "reweighing", "undersample",
               "oversample"]
)
def test_group_absent_from_train_but_in_the_data_raises(scheme):
    train = _train(100)
    all_rows = pd.concat([train, pd.DataFrame({"row": [1000], "label": [1], "s": [2]})])
    with pytest.raises(ValueError, match=rf"scheme '{scheme}' needs every group of \['s'\] "
                                         r"in the training split, but \['s=2'\] has no training"):
        compute_weights(train, scheme, ["s"], all_rows=all_rows)


def test_absent_intersection_is_named_by_its_group_key():
    train = _train(200, n_sex=2)
    all_rows = pd.concat([train, pd.DataFrame({"row": [1000], "label": [1], "s": [1],
                                               "sex": ["X"]})])
    with pytest.raises(ValueError, match=r"but \['s=1&sex=X'\] has no training row"):
        compute_weights(train, "group_balanced", ["s", "sex"], all_rows=all_rows)


def test_unknown_group_values_form_a_group_of_their_own():
    train = _train(300, n_sex=2).astype({"sex": object})
    train.loc[train.index[:30], "sex"] = None
    w = compute_weights(train, "group_balanced", ["sex"])
    totals = pd.Series(w).groupby(train["sex"].fillna("unknown").to_numpy()).sum()
    assert totals.index.tolist() == ["F", "M", "unknown"]
    np.testing.assert_allclose(totals, len(train) / 3, rtol=1e-12)


@pytest.mark.parametrize("scheme", ["none", "class_balanced", "column"])
def test_group_free_schemes_ignore_absent_groups(scheme):
    train = _train(100)
    all_rows = pd.concat([train, pd.DataFrame({"row": [1000], "label": [1], "s": [2]})])
    w = compute_weights(train, scheme, ["s"], all_rows=all_rows, column="row")
    assert w.mean() == pytest.approx(1.0)


def test_all_groups_present_passes_the_check():
    train = _train(100)
    all_rows = pd.concat([train, train.assign(row=train["row"] + 1000)])
    w = compute_weights(train, "reweighing", ["s"], all_rows=all_rows)
    np.testing.assert_allclose(w, compute_weights(train, "reweighing", ["s"]))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_missing_group_column_raises(scheme):
    with pytest.raises(ValueError, match=r"weights\.groups: column\(s\) \['sex'\] not found; "
                                         r"available: \['row', 'label', 's'\]"):
        compute_weights(_train(50), scheme, ["s", "sex"])


def test_missing_label_column_raises():
    with pytest.raises(ValueError, match=r"weights \(the training table\): column\(s\) "
                                         r"\['label'\] not found"):
        compute_weights(_train(50).drop(columns="label"), "none", ["s"])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_empty_train_raises(scheme):
    with pytest.raises(ValueError, match=r"weights: the training split is empty"):
        compute_weights(_train(50).iloc[:0], scheme, ["s"])


def test_unknown_scheme_raises():
    with pytest.raises(ValueError, match=r"weights\.schemes: unknown scheme 'fair'"):
        compute_weights(_train(50), "fair", ["s"])


@pytest.mark.parametrize("sample_by", ["group", "group_class"])
@pytest.mark.parametrize("groups", [["s"], ["s", "sex"]])
def test_undersample_keeps_the_smallest_cell_size_of_every_cell(sample_by, groups):
    train = _train(n_sex=3)
    w = compute_weights(train, "undersample", groups, sample_by=sample_by, seed=1)
    cols = groups + ["label"] if sample_by == "group_class" else groups
    cells = _group_key(train, cols).to_numpy()
    kept = pd.Series(w > 0).groupby(cells).sum()
    assert (kept == pd.Series(cells).value_counts().min()).all()
    assert len(np.unique(w[w > 0])) == 1  # kept rows weigh the same
    np.testing.assert_array_equal(
        w, compute_weights(train, "undersample", groups, sample_by=sample_by, seed=1))


@pytest.mark.parametrize("sample_by", ["group", "group_class"])
def test_oversample_brings_every_cell_to_the_largest(sample_by):
    train = _train(n_sex=2)
    w = compute_weights(train, "oversample", ["s", "sex"], sample_by=sample_by, seed=0)
    cols = ["s", "sex"] + (["label"] if sample_by == "group_class" else [])
    cells = _group_key(train, cols).to_numpy()
    copies = w / w.min() if sample_by == "group" else None
    totals = pd.Series(w).groupby(cells).sum()
    np.testing.assert_allclose(totals, totals.iloc[0], rtol=1e-12)
    if copies is not None:  # copies are whole numbers
        ratio = w * len(w) / w.sum()
        assert (ratio > 0).all()


def test_column_scheme_uses_the_metadata_column_normalised():
    train = _train(50).assign(wt=np.linspace(1, 3, 50))
    w = compute_weights(train, "column", ["s"], column="wt")
    np.testing.assert_allclose(w, train["wt"] / train["wt"].mean())


@pytest.mark.parametrize(("column", "values", "message"), [
    ("nope", None, r"weights\.column: column\(s\) \['nope'\] not found; available: \['row', "),
    (None, None, r"weights\.column: scheme 'column' needs the name of a metadata column"),
    ("wt", -1.0, r"weights\.column: column 'wt' needs finite weights >= 0"),
    ("wt", np.nan, r"weights\.column: column 'wt' needs finite weights >= 0"),
])
def test_column_scheme_errors(column, values, message):
    train = _train(20).assign(wt=values if values is not None else 1.0)
    with pytest.raises(ValueError, match=message):
        compute_weights(train, "column", ["s"], column=column)


def test_sample_order_draws_in_proportion_to_weight():
    w = np.array([1.0, 3.0, 0.0, 4.0])
    order = sample_order(w, 80_000, np.random.default_rng(0))
    share = np.bincount(order, minlength=4) / len(order)
    np.testing.assert_allclose(share, w / w.sum(), atol=0.01)
    np.testing.assert_array_equal(order, sample_order(w, 80_000, np.random.default_rng(0)))


@pytest.mark.parametrize("w", [[], [0.0, 0.0], [1.0, np.nan], [1.0, -1.0]])
def test_sample_order_rejects_bad_weights(w):
    with pytest.raises(ValueError, match=r"the sampler needs a non-empty 1-D array"):
        sample_order(np.array(w), 5, np.random.default_rng(0))


def test_reweighing_warns_when_a_group_class_cell_is_empty():
    # extreme bias: s = label, so the cells (s=0, 1) and (s=1, 0) are empty
    train = pd.DataFrame({"label": [0, 0, 1, 1], "s": [0, 0, 1, 1]})
    with pytest.warns(UserWarning, match=r"reweighing: cell\(s\) s=0&label=1, s=1&label=0 have "
                                         "no training row"):
        w = compute_weights(train, "reweighing", ["s"])
    assert np.allclose(w, 1.0)  # what the warning is about: nothing is reweighed


def test_no_warning_when_every_cell_has_rows():
    import warnings

    train = pd.DataFrame({"label": [0, 1, 0, 1], "s": [0, 0, 1, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_weights(train, "reweighing", ["s"])
