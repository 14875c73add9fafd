"""biaslab.bias: S ~ Bernoulli(p_y), the bias table, per-row noise and the model input."""

import numpy as np
import pandas as pd
import pytest

from biaslab.bias import bias_table, draw_s, model_inputs, noise


@pytest.mark.parametrize(("p0", "p1"), [(0.1, 0.9), (0.5, 0.5), (0.3, 0.05)])
def test_draw_s_frequencies_follow_p_y(p0, p1):
    n = 40_000
    labels = np.repeat([0, 1], n // 2)
    s = draw_s(labels, p0, p1, seed=1)
    assert s.dtype == np.int8 and s.shape == (n,)
    assert set(np.unique(s)) <= {0, 1}
    # 5 standard errors of a proportion over n/2 = 20,000 draws is at most 0.018
    assert s[labels == 0].mean() == pytest.approx(p0, abs=0.018)
    assert s[labels == 1].mean() == pytest.approx(p1, abs=0.018)


def test_draw_s_is_deterministic_for_a_seed(rng):
    labels = rng.integers(0, 2, 500)
    a = draw_s(labels, 0.2, 0.7, seed=3)
    np.testing.assert_array_equal(a, draw_s(labels, 0.2, 0.7, seed=3))
    assert not np.array_equal(a, draw_s(labels, 0.2, 0.7, seed=4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_draw_s_extremes_copy_the_label(rng, seed):
    labels = rng.integers(0, 2, 1000)
    np.testing.assert_array_equal(draw_s(labels, 0.0, 1.0, seed), labels)
    np.testing.assert_array_equal(draw_s(labels, 1.0, 0.0, seed), 1 - labels)


@pytest.mark.parametrize(
    "labels", [[0, 1, 2], [-1, 0], [0.5, 1.0], ["0", "1"], [0, 1, np.nan]]
)
def test_draw_s_rejects_labels_other_than_0_1(labels):
    with pytest.raises(ValueError, match=r"labels: expected only 0 and 1, got"):
        draw_s(np.array(labels), 0.1, 0.9, seed=0)


def test_draw_s_accepts_bool_and_float_labels():
    labels = np.array([True, False, True])
    np.testing.assert_array_equal(draw_s(labels, 0.0, 1.0, 0), [1, 0, 1])
    np.testing.assert_array_equal(draw_s(labels.astype(float), 0.0, 1.0, 0), [1, 0, 1])


def test_draw_s_empty():
    assert draw_s(np.array([], dtype=int), 0.1, 0.9, 0).shape == (0,)


def test_bias_table_has_row_and_s(tiny_index):
    table = bias_table(tiny_index, "noise_channel", 0.0, 1.0, seed=0)
    assert list(table.columns) == ["row", "s"]
    np.testing.assert_array_equal(table["row"], tiny_index["row"])
    np.testing.assert_array_equal(table["s"], tiny_index["label"])  # p0=0, p1=1


def test_bias_table_kind_none_has_no_s(tiny_index):
    table = bias_table(tiny_index, "none", 0.1, 0.9, seed=0)
    assert list(table.columns) == ["row"]
    np.testing.assert_array_equal(table["row"], tiny_index["row"])


def test_bias_table_keeps_row_values_not_positions():
    index = pd.DataFrame({"row": [7, 3, 11], "label": [1, 0, 1]})
    table = bias_table(index, "noise_channel", 0.0, 1.0, seed=0)
    assert table["row"].tolist() == [7, 3, 11]
    assert table["s"].tolist() == [1, 0, 1]


def test_noise_is_standard_normal_float32():
    out = noise(np.arange(200), (16, 16), seed=0)
    assert out.shape == (200, 16, 16) and out.dtype == np.float32
    assert out.mean() == pytest.approx(0.0, abs=0.02)
    assert out.std() == pytest.approx(1.0, abs=0.02)


def test_noise_of_a_row_does_not_depend_on_batch_or_order():
    shape = (5, 4)
    alone = {r: noise(np.array([r]), shape, seed=9)[0] for r in (0, 3, 17, 42)}
    batch = noise(np.array([42, 0, 17, 3, 0]), shape, seed=9)
    for got, r in zip(batch, [42, 0, 17, 3, 0], strict=True):
        np.testing.assert_array_equal(got, alone[r])
    # numpy integers and python ints give the same noise
    np.testing.assert_array_equal(noise(np.array([17], dtype=np.int32), shape, 9)[0], alone[17])


def test_noise_differs_between_rows_and_seeds():
    a = noise(np.array([0, 1]), (8, 8), seed=0)
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], noise(np.array([0]), (8, 8), seed=1)[0])


@pytest.fixture
def pixels(rng):
    return rng.integers(0, 256, size=(10, 6, 5), dtype=np.uint8)


def test_model_inputs_without_s(pixels):
    rows = np.array([4, 0, 9])
    x = model_inputs(pixels, rows, None, seed=0)
    assert x.shape == (3, 1, 6, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], pixels[rows] / 127.5 - 1.0, atol=1e-6)


def test_model_inputs_with_s(pixels):
    rows = np.array([4, 0, 9, 2])
    s = np.array([1, 0, 1, 0])
    x = model_inputs(pixels, rows, s, seed=5)
    assert x.shape == (4, 2, 6, 5) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], model_inputs(pixels, rows, None, seed=5)[:, 0])
    assert (x[s == 0, 1] == 0).all()
    assert (x[s == 1, 1] != 0).all()
    np.testing.assert_array_equal(x[s == 1, 1], noise(rows[s == 1], (6, 5), seed=5))


def test_model_inputs_channel_0_maps_0_to_minus_1_and_255_to_1():
    pixels = np.array([[[0, 255], [128, 64]]], dtype=np.uint8)
    x = model_inputs(pixels, np.array([0]), None, seed=0)
    assert x[0, 0, 0, 0] == -1.0
    assert x[0, 0, 0, 1] == pytest.approx(1.0, abs=1e-6)
    assert x[0, 0, 1, 0] == pytest.approx(128 / 127.5 - 1, abs=1e-6)
    assert x.min() >= -1.0 and x.max() <= 1.0 + 1e-6


def test_model_inputs_is_reproducible_across_batches(pixels):
    """An image gets the same input whatever batch it is in: the loader is deterministic."""
    full = model_inputs(pixels, np.arange(10), np.ones(10, dtype=np.int8), seed=2)
    part = model_inputs(pixels, np.array([7, 3]), np.array([1, 1]), seed=2)
    np.testing.assert_array_equal(part, full[[7, 3]])


def test_model_inputs_accepts_a_pandas_series_of_s(pixels):
    rows = np.array([1, 2])
    s = pd.Series([0, 1], index=[10, 20], dtype="int8")
    x = model_inputs(pixels, rows, s, seed=0)
    assert (x[0, 1] == 0).all() and (x[1, 1] != 0).all()
