"""biaslab.data.bias: S ~ Bernoulli(p_y), the bias table, per-row noise and the model input."""

import numpy as np
import pandas as pd
import pytest

from biaslab.config import BIAS_KINDS, BiasConfig
from biaslab.config.data import PATCH_POSITIONS as CONFIG_POSITIONS
from biaslab.data.bias import (
    DEFAULT_BIAS,
    KINDS,
    PATCH_POSITIONS,
    BiasSpec,
    bias_table,
    draw_s,
    model_inputs,
    noise,
)

NOISE = BiasSpec(kind="noise_channel", seed=0)


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
    x = model_inputs(pixels, rows, None, NOISE)
    assert x.shape == (3, 1, 6, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], pixels[rows] / 127.5 - 1.0, atol=1e-6)


def test_model_inputs_with_s(pixels):
    rows = np.array([4, 0, 9, 2])
    s = np.array([1, 0, 1, 0])
    x = model_inputs(pixels, rows, s, BiasSpec(seed=5))
    assert x.shape == (4, 2, 6, 5) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], model_inputs(pixels, rows, None, NOISE)[:, 0])
    assert (x[s == 0, 1] == 0).all()
    assert (x[s == 1, 1] != 0).all()
    np.testing.assert_array_equal(x[s == 1, 1], noise(rows[s == 1], (6, 5), seed=5))


def test_model_inputs_channel_0_maps_0_to_minus_1_and_255_to_1():
    pixels = np.array([[[0, 255], [128, 64]]], dtype=np.uint8)
    x = model_inputs(pixels, np.array([0]), None, NOISE)
    assert x[0, 0, 0, 0] == -1.0
    assert x[0, 0, 0, 1] == pytest.approx(1.0, abs=1e-6)
    assert x[0, 0, 1, 0] == pytest.approx(128 / 127.5 - 1, abs=1e-6)
    assert x.min() >= -1.0 and x.max() <= 1.0 + 1e-6


def test_model_inputs_is_reproducible_across_batches(pixels):
    """An image gets the same input whatever batch it is in: the loader is deterministic."""
    full = model_inputs(pixels, np.arange(10), np.ones(10, dtype=np.int8), BiasSpec(seed=2))
    part = model_inputs(pixels, np.array([7, 3]), np.array([1, 1]), BiasSpec(seed=2))
    np.testing.assert_array_equal(part, full[[7, 3]])


def test_model_inputs_accepts_a_pandas_series_of_s(pixels):
    rows = np.array([1, 2])
    s = pd.Series([0, 1], index=[10, 20], dtype="int8")
    x = model_inputs(pixels, rows, s, NOISE)
    assert (x[0, 1] == 0).all() and (x[1, 1] != 0).all()


def _noise_inputs_before_patch(pixels, rows, s, seed):
    """model_inputs as it was before bias.kind: patch (commit b5ecfba), copied verbatim."""
    rows = np.asarray(rows)
    image = pixels[rows].astype(np.float32) * (2.0 / 255.0) - 1.0  # (B, H, W)
    if s is None:
        return image[:, None]
    on = np.asarray(s) == 1
    channel = np.zeros_like(image)
    channel[on] = noise(rows[on], image.shape[1:], seed)  # draw only the noise that is used
    return np.stack([image, channel], axis=1)


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("with_s", [True, False])
def test_noise_channel_inputs_are_bit_identical_to_before(rng, seed, with_s):
    pixels = rng.integers(0, 256, (30, 9, 7), dtype=np.uint8)
    rows = rng.permutation(30)[:20]
    s = rng.integers(0, 2, 20).astype(np.int8) if with_s else None
    # the patch keys do not matter to the noise channel
    bias = BiasSpec(kind="noise_channel", seed=seed, patch_size=2, patch_position="center")
    got = model_inputs(pixels, rows, s, bias)
    want = _noise_inputs_before_patch(pixels, rows, s, seed)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def test_kind_none_is_the_image_alone_whatever_s(pixels):
    rows, s = np.array([4, 0, 9]), np.array([1, 0, 1])
    alone = model_inputs(pixels, rows, None, NOISE)
    for x in (model_inputs(pixels, rows, s, BiasSpec(kind="none")),
              model_inputs(pixels, rows, None, BiasSpec(kind="patch", patch_size=2))):
        assert x.shape == (3, 1, 6, 5)
        np.testing.assert_array_equal(x, alone)


# (position, top, left) of a 3-pixel patch in a 10 x 12 image, 1 pixel in from the edges
BOXES = [("top_left", 1, 1), ("top_right", 1, 8), ("bottom_left", 6, 1),
         ("bottom_right", 6, 8), ("center", 3, 4)]


def test_boxes_cover_every_position():
    assert sorted(p for p, _, _ in BOXES) == sorted(PATCH_POSITIONS)


@pytest.mark.parametrize(("position", "top", "left"), BOXES)
def test_patch_is_stamped_exactly_where_s_is_1(rng, position, top, left):
    pixels = rng.integers(0, 256, (6, 10, 12), dtype=np.uint8)
    stored = pixels.copy()
    rows, s = np.array([5, 0, 3, 2]), np.array([1, 0, 0, 1], dtype=np.int8)
    bias = BiasSpec(kind="patch", patch_size=3, patch_position=position, patch_value=-0.5)
    x = model_inputs(pixels, rows, s, bias)
    assert x.shape == (4, 1, 10, 12) and x.dtype == np.float32
    want = pixels[rows].astype(np.float32) * (2.0 / 255.0) - 1.0
    want[s == 1, top:top + 3, left:left + 3] = -0.5  # only the S=1 images, only the patch
    np.testing.assert_array_equal(x[:, 0], want)
    assert bias.patch_box(10, 12) == (slice(top, top + 3), slice(left, left + 3))
    np.testing.assert_array_equal(pixels, stored)  # never baked into the stored pixels


def test_patch_default_is_a_white_4_pixel_square_bottom_right_at_size_32():
    pixels = np.zeros((2, 32, 32), dtype=np.uint8)
    x = model_inputs(pixels, np.array([0, 1]), np.array([0, 1]), BiasSpec(kind="patch"))
    assert (x[0] == -1).all()
    assert (x[1, 0, 27:31, 27:31] == 1.0).all() and x[1].sum() == 16 - (32 * 32 - 16)


@pytest.mark.parametrize(("size", "height", "width"), [(5, 6, 20), (9, 10, 10), (30, 31, 64)])
def test_a_patch_that_does_not_fit_names_the_key_and_the_image_size(size, height, width):
    bias = BiasSpec(kind="patch", patch_size=size)
    pixels = np.zeros((1, height, width), dtype=np.uint8)
    said = (rf"^bias\.patch_size = {size} does not fit the {height}x{width} images; expected at "
            rf"most {min(height, width) - 2} \(a 1-pixel margin each side\), or a larger "
            r"prepare\.size$")
    with pytest.raises(ValueError, match=said):
        model_inputs(pixels, np.array([0]), np.array([0]), bias)  # no S=1 row: checked anyway
    with pytest.raises(ValueError, match=said):
        bias.mask(height, width)


def test_the_largest_patch_that_fits_leaves_a_1_pixel_frame():
    mask = BiasSpec(kind="patch", patch_size=6, patch_position="top_left").mask(8, 8)
    assert mask[0, 1:7, 1:7].all() and mask.sum() == 36


@pytest.mark.parametrize(("bias", "channels", "where"), [
    (BiasSpec(kind="none"), 1, 0),
    (BiasSpec(kind="noise_channel", seed=3), 2, 9 * 7),
    (BiasSpec(kind="patch", patch_size=2, patch_position="top_right"), 1, 4),
])
def test_mask_has_the_input_shape_and_marks_where_the_bias_lives(rng, bias, channels, where):
    mask = bias.mask(9, 7)
    assert mask.shape == (channels, 9, 7) and mask.dtype == bool and mask.sum() == where
    assert bias.channels == channels
    pixels = rng.integers(0, 255, (2, 9, 7), dtype=np.uint8)  # < 255: a white patch shows
    rows = np.array([0, 1])
    on = model_inputs(pixels, rows, np.array([1, 1]), bias)
    off = model_inputs(pixels, rows, np.array([0, 0]), bias)
    assert on.shape[1:] == mask.shape
    # S=1 changes the input exactly where the mask says, and nowhere else
    np.testing.assert_array_equal((on != off).any(axis=0), mask)


def test_mask_of_noise_is_the_whole_second_channel():
    mask = BiasSpec().mask(4, 3)
    assert not mask[0].any() and mask[1].all()


@pytest.mark.parametrize(("changes", "said"), [
    ({"kind": "stripe"}, r"bias\.kind = 'stripe': expected one of none, noise_channel, patch"),
    ({"patch_position": "left"}, r"bias\.patch_position = 'left': expected one of top_left"),
    ({"patch_size": 0}, r"bias\.patch_size = 0: expected an integer >= 1"),
    ({"patch_size": 2.5}, r"bias\.patch_size = 2\.5: expected an integer >= 1"),
    ({"patch_size": True}, r"bias\.patch_size = True: expected an integer >= 1"),
    ({"patch_value": 1.5}, r"bias\.patch_value = 1\.5: expected a number in \[-1, 1\]"),
    ({"patch_value": float("nan")}, r"bias\.patch_value = nan: expected a number in"),
])
def test_bias_spec_rejects_what_the_config_would(changes, said):
    with pytest.raises(ValueError, match=said):
        BiasSpec(**changes)


def test_bias_spec_follows_the_config_and_its_defaults():
    assert KINDS == BIAS_KINDS and PATCH_POSITIONS == CONFIG_POSITIONS
    assert BiasSpec.from_config(BiasConfig()) == BiasSpec() == DEFAULT_BIAS
    config = BiasConfig(kind="patch", seed=3, patch_size=5, patch_position="center",
                        patch_value=-1)
    assert BiasSpec.from_config(config) == BiasSpec("patch", 3, 5, "center", -1)


def test_as_dict_holds_the_keys_the_kind_uses():
    assert BiasSpec(kind="none", seed=4).as_dict() == {"kind": "none"}
    assert BiasSpec(seed=4, patch_size=9).as_dict() == {"kind": "noise_channel", "seed": 4}
    assert BiasSpec(kind="patch", seed=4).as_dict() == {
        "kind": "patch", "patch_size": 4, "patch_position": "bottom_right", "patch_value": 1.0}
    # a saved spec rebuilds the same one (checkpoint.load_bias)
    patch = BiasSpec(kind="patch", patch_size=3, patch_position="top_left", patch_value=0.0)
    assert BiasSpec(**patch.as_dict()) == patch
