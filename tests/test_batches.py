"""Batches: one split of the joined table as the loop sees it, and its inputs as tensors."""

import numpy as np
import pandas as pd
import pytest
import torch

from biaslab.data.bias import BiasSpec
from biaslab.model.batches import TrainData, batches, cached_inputs

NOISE, PATCH, NONE = BiasSpec(seed=3), BiasSpec(kind="patch", patch_size=2), BiasSpec(kind="none")


@pytest.fixture
def table():
    return pd.DataFrame({"row": [0, 1, 2, 3, 4], "label": [0, 1, 1, 0, 1],
                         "split": ["train", "val", "train", "test", "train"],
                         "s": np.array([1, 0, 0, 1, 1], dtype=np.int8),
                         "weight": [0.5, np.nan, 1.5, np.nan, 1.0]})


def test_from_table_takes_the_split_rows_with_s_and_weights(table):
    train = TrainData.from_table(table, "train", weights="weight", sampler=True)
    np.testing.assert_array_equal(train.rows, [0, 2, 4])
    np.testing.assert_array_equal(train.labels, [0, 1, 1])
    np.testing.assert_array_equal(train.s, [1, 0, 1])
    np.testing.assert_array_equal(train.weights, [0.5, 1.5, 1.0])
    assert train.sampler
    assert (train.in_channels(NOISE), train.in_channels(PATCH), train.in_channels(NONE)) == (
        2, 1, 1)


def test_from_table_without_s_or_weights_has_one_channel_and_unit_weights(table):
    val = TrainData.from_table(table.drop(columns="s"), "val")
    np.testing.assert_array_equal(val.rows, [1])
    assert val.s is None and val.weights is None
    assert {val.in_channels(b) for b in (NOISE, PATCH, NONE)} == {1}  # S unknown: not shown


def test_from_table_names_a_missing_weights_column(table):
    with pytest.raises(ValueError, match=r"train split's table: column\(s\) \['w'\] not found"):
        TrainData.from_table(table, "train", weights="w")


@pytest.mark.parametrize(("bias", "channels"), [(NOISE, 2), (PATCH, 1), (NONE, 1)])
def test_batches_assemble_the_same_inputs_as_the_cache_in_the_given_order(table, bias,
                                                                         channels):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 6, 6), dtype=np.uint8)
    data = TrainData.from_table(table, "train")
    cache = cached_inputs(pixels, data, bias)
    assert cache.shape == (3, channels, 6, 6)
    order = np.array([2, 0, 1])
    direct = list(batches(pixels, data, bias, 2, order, torch.device("cpu")))
    cached = list(batches(pixels, data, bias, 2, order, torch.device("cpu"), cache))
    assert [len(idx) for idx, _ in direct] == [2, 1]
    for (i, x), (j, y) in zip(direct, cached, strict=True):
        np.testing.assert_array_equal(i, j)
        torch.testing.assert_close(x, y)
    torch.testing.assert_close(direct[0][1], cache[[2, 0]])


def test_batches_stamp_the_patch_on_the_s_1_rows_only(table):
    pixels = np.zeros((5, 6, 6), dtype=np.uint8)  # black: the white patch stands out
    data = TrainData.from_table(table, "train")  # rows 0, 2, 4 with s 1, 0, 1
    [(idx, x)] = batches(pixels, data, PATCH, 3, np.arange(3), torch.device("cpu"))
    stamped = (x[:, 0] == 1.0).sum(dim=(1, 2))
    assert stamped.tolist() == [4, 0, 4]  # a 2 x 2 patch where s = 1
    assert (pixels == 0).all()
