"""biaslab.data.images (square grayscale uint8 images), biaslab.data.prepare (files decoded in
parallel into pixels.npy) and biaslab.data.sources (the digits source)."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biaslab.artifacts import read_pixels, write_npy
from biaslab.config import ConfigError, parse_section
from biaslab.data.images import decode_file, digest, prepare_arrays, to_square_gray
from biaslab.data.prepare import check_rejected, copy_rows, prepare_files
from biaslab.data.sources import load_digits_source


def _ramp(w, h, axis):
    """A w x h gray ramp whose value is 8 x the column (axis=1) or row (axis=0) index."""
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx if axis == 1 else yy) * 8).astype(np.uint8)  # (h, w)


@pytest.mark.parametrize(
    ("w", "h", "axis", "keep"),
    [
        (30, 10, 1, slice(10, 20)),  # wide: the middle 10 columns
        (13, 10, 1, slice(1, 11)),  # odd excess: (13 - 10) // 2 = 1 column off the left
        (10, 30, 0, slice(10, 20)),  # tall: the middle 10 rows
    ],
)
def test_to_square_gray_centre_crops_rgb(w, h, axis, keep):
    gray = _ramp(w, h, axis)
    rgb = Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")  # R = G = B: luma = gray
    out = to_square_gray(rgb, 10)  # the crop's own size: no resampling
    assert out.dtype == np.uint8 and out.shape == (10, 10)
    expected = gray[:, keep] if axis == 1 else gray[keep, :]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("size", [8, 17, 64])
def test_to_square_gray_resizes_to_size(size):
    img = Image.fromarray(_ramp(40, 25, 1), mode="L")
    out = to_square_gray(img, size)
    assert out.dtype == np.uint8 and out.shape == (size, size)
    # the ramp still rises left to right after resizing (middle row, away from the edges)
    row = out[size // 2].astype(int)
    assert row[-2] > row[1]


def test_uniform_image_stays_uniform():
    img = Image.new("RGB", (50, 30), (120, 120, 120))
    np.testing.assert_array_equal(to_square_gray(img, 16), 120)


def test_rgb_uses_luma_not_a_channel():
    red = to_square_gray(Image.new("RGB", (10, 10), (255, 0, 0)), 10)
    green = to_square_gray(Image.new("RGB", (10, 10), (0, 255, 0)), 10)
    assert 0 < red[0, 0] < green[0, 0] < 255  # ITU-R 601 luma: 0.299 R, 0.587 G


def test_rgba_input():
    rgba = np.zeros((12, 20, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 0  # fully transparent: alpha is dropped, not composited
    out = to_square_gray(Image.fromarray(rgba, mode="RGBA"), 8)
    assert out.shape == (8, 8) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, 200)


def test_palette_input():
    img = Image.new("P", (24, 16))
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * (256 * 3 - 6))
    pixels = np.zeros((16, 24), dtype=np.uint8)
    pixels[:, 12:] = 1  # right half white, left half black
    img.putdata(pixels.ravel().tolist())
    out = to_square_gray(img, 16)  # crop columns 4..19: 8 black, 8 white
    assert out.shape == (16, 16) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :8], 0)
    np.testing.assert_array_equal(out[:, 8:], 255)


def test_16_bit_grayscale_input():
    img = Image.fromarray(np.full((10, 10), 1000, dtype=np.int32), mode="I")
    out = to_square_gray(img, 10)
    assert out.dtype == np.uint8 and out.shape == (10, 10)


def test_prepare_arrays():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 12), dtype=np.uint8)
    out = prepare_arrays(images, 8)
    assert out.shape == (5, 8, 8) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, images[:, :, 2:10])  # centre crop, no resize
    for i in range(5):
        np.testing.assert_array_equal(
            prepare_arrays(images, 16)[i], to_square_gray(Image.fromarray(images[i]), 16))


def test_prepare_arrays_empty_stack():
    assert prepare_arrays(np.zeros((0, 8, 8), dtype=np.uint8), 16).shape == (0, 16, 16)


@pytest.mark.parametrize(
    ("images", "described"),
    [
        (np.zeros((2, 8, 8), dtype=np.float32), r"got float32 \(2, 8, 8\)"),
        (np.zeros((2, 8, 8), dtype=np.uint16), r"got uint16 \(2, 8, 8\)"),
        (np.zeros((8, 8), dtype=np.uint8), r"got uint8 \(8, 8\)"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), r"got uint8 \(2, 8, 8, 3\)"),
    ],
)
def test_prepare_arrays_rejects_wrong_dtype_or_ndim(images, described):
    with pytest.raises(ValueError, match=r"images: expected a uint8 array of shape \(N, h, w\), "
                       + described):
        prepare_arrays(images, 8)


@pytest.fixture(scope="module")
def digits_1_vs_7():
    return load_digits_source([1], [7])


def test_digits_1_vs_7(digits_1_vs_7):
    index, images = digits_1_vs_7
    assert set(index["digit"]) == {1, 7}
    np.testing.assert_array_equal(index["label"], (index["digit"] == 7).astype(int))
    assert len(index) == len(images) == (index["digit"] == 1).sum() + (index["digit"] == 7).sum()
    # scikit-learn's set has 182 ones and 179 sevens
    assert index["digit"].value_counts().to_dict() == {1: 182, 7: 179}


def test_digits_index_columns(digits_1_vs_7):
    index, _ = digits_1_vs_7
    assert index.columns.tolist() == ["image_id", "label", "patient_id", "source", "digit"]
    assert index["image_id"].is_unique and index["image_id"].str.fullmatch(r"digit-\d{4}").all()
    assert index["patient_id"].isna().all()
    assert index["source"].str.fullmatch(r"digits/\d+").all()
    assert set(index["label"]) == {0, 1}


def test_digits_images_are_uint8_0_255(digits_1_vs_7):
    _, images = digits_1_vs_7
    assert images.dtype == np.uint8 and images.shape[1:] == (8, 8)
    assert images.min() == 0 and images.max() == 255  # 16 -> 255
    # each image is prepared without a complaint
    assert prepare_arrays(images[:3], 16).shape == (3, 16, 16)


def test_digits_matches_scikit_learn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    index, images = load_digits_source([0, 2], [3])
    pos = np.flatnonzero(np.isin(bunch.target, [0, 2, 3]))
    np.testing.assert_array_equal(index["digit"], bunch.target[pos])
    np.testing.assert_array_equal(index["label"], bunch.target[pos] == 3)
    np.testing.assert_array_equal(images, np.rint(bunch.images[pos] * 255 / 16))
    assert index["source"].tolist() == [f"digits/{p}" for p in pos]


def test_overlapping_digits_are_stopped_by_config_not_the_loader():
    with pytest.raises(ConfigError, match=r"data\.positive = \[7\].*not also listed"):
        parse_section("data", {"negative": [1, 7], "positive": [7]})
    # the loader trusts its validated config: it does not check again
    index, _ = load_digits_source([1, 7], [7])
    assert set(index.loc[index["digit"] == 7, "label"]) == {1}


# ---------------------------------------------------------------- files: modes, EXIF, rejects


def test_16_bit_is_scaled_by_its_range_not_clipped():
    ramp = np.linspace(1000, 5000, 64 * 64).reshape(64, 64).astype(np.uint16)
    for img in (Image.fromarray(ramp), Image.fromarray(ramp.astype(np.int32), "I")):
        assert img.mode in ("I;16", "I")
        out = to_square_gray(img, 64)
        assert out.min() == 0 and out.max() == 255  # clipping would give 255 everywhere
        assert np.all(np.diff(out.astype(int).ravel()) >= 0)


def test_cmyk_input():
    out = to_square_gray(Image.new("CMYK", (20, 10), (0, 0, 0, 0)), 8)  # no ink: white
    assert out.shape == (8, 8) and (out == 255).all()


def test_exif_orientation_is_respected(tmp_path):
    # a wide image: left half black, right half white, saved with orientation 6 (rotate 90)
    arr = np.zeros((20, 40), dtype=np.uint8)
    arr[:, 20:] = 255
    img = Image.fromarray(arr).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = decode_file(str(tmp_path / "r.jpg"), 20)
    # upright it is tall (20 x 40): its centre crop is split top/bottom, not left/right as
    # the stored pixels are
    assert abs(out[:8].mean() - out[-8:].mean()) > 200
    assert abs(out[:, :8].mean() - out[:, -8:].mean()) < 40
    assert out.shape == (20, 20)


def test_jpeg_draft_decoding_close_to_full_decoding(tmp_path):
    yy, xx = np.mgrid[0:512, 0:512]
    arr = ((xx + yy) / 4).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=95)
    fast = decode_file(str(tmp_path / "big.jpg"), 32).astype(int)
    with Image.open(tmp_path / "big.jpg") as img:
        full = to_square_gray(img, 32).astype(int)
    assert np.abs(fast - full).max() <= 6


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (mode, ext) in enumerate([("RGB", "png"), ("L", "jpg"), ("RGBA", "png"),
                                     ("P", "png"), ("I;16", "png"), ("RGB", "jpg")] * 6):
        arr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        img = {"L": img.convert("L"), "RGBA": img.convert("RGBA"), "P": img.convert("P"),
               "I;16": Image.fromarray(arr[..., 0].astype(np.uint16) * 200)}.get(mode, img)
        img.save(tmp_path / f"{i}.{ext}")
        paths.append(str(tmp_path / f"{i}.{ext}"))
    good = Path(paths[0]).read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 3])
    (tmp_path / "text.jpg").write_text("not an image")
    bad = [str(tmp_path / n) for n in ("empty.png", "trunc.png", "text.jpg", "missing.png")]
    return paths, bad


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_files_parallel_matches_serial_and_rejects_bad_files(image_files, workers):
    good, bad = image_files
    paths = good[:5] + bad + good[5:]
    out = np.zeros((len(paths), 16, 16), dtype=np.uint8)
    reasons = prepare_files(paths, 16, out, workers=workers, progress=False)
    assert reasons[5:9] == ["empty file", "truncated image (image file is truncated)",
                            reasons[7], "missing file"]
    # the reason holds no path: rejected.csv is the same wherever the data lie
    assert reasons[7] == "unreadable (UnidentifiedImageError: cannot identify image file)"
    assert all(r is None for r in reasons[:5] + reasons[9:])
    expected = np.stack([decode_file(p, 16) for p in good])
    np.testing.assert_array_equal(np.delete(out, range(5, 9), axis=0), expected)
    assert (out[5:9] == 0).all()


def test_reasons_hold_no_path_and_a_folder_name_does_not_classify(tmp_path):
    # a file named in the message by Pillow (its absolute path) and by OSError (a folder)
    (tmp_path / "truncated").mkdir()
    (tmp_path / "truncated" / "notes.png").write_text("patient notes")
    (tmp_path / "folder.png").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "cut.png")
    good = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 3])
    paths = [str(tmp_path / n) for n in ("truncated/notes.png", "folder.png", "cut.png")]
    out = np.zeros((3, 8, 8), dtype=np.uint8)
    reasons = prepare_files(paths, 8, out, workers=1, progress=False)
    assert reasons == ["unreadable (UnidentifiedImageError: cannot identify image file)",
                       "unreadable (IsADirectoryError: [Errno 21] Is a directory)",
                       "truncated image (image file is truncated)"]


def test_prepare_files_into_a_memmap(image_files, tmp_path):
    good, _ = image_files
    out = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.uint8,
                                    shape=(len(good), 12, 12))
    assert all(r is None for r in prepare_files(good, 12, out, workers=2, progress=False))
    out.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy", mmap_mode="r")[3],
                                  decode_file(good[3], 12))


def test_prepare_files_skips_none_and_fills_digests(image_files):
    good, bad = image_files
    paths = [good[0], None, bad[0], good[1], good[0]]
    out = np.full((5, 8, 8), 7, dtype=np.uint8)
    digests = ["stale"]
    reasons = prepare_files(paths, 8, out, workers=1, progress=False, digests=digests)
    assert reasons == [None, None, "empty file", None, None]
    assert (out[1] == 0).all()  # skipped: zeros, as a rejected file
    assert digests[1] is None and digests[2] is None and len(digests) == 5
    assert digests[0] == digests[4] == digest(decode_file(good[0], 8)) != digests[3]


def test_prepare_files_checks_the_output_shape():
    with pytest.raises(ValueError, match=r"out: expected uint8 \(2, 8, 8\), got uint8 \(2, 9, 9\)"):
        prepare_files(["a", "b"], 8, np.zeros((2, 9, 9), np.uint8))


def test_copy_rows_keeps_order():
    src = np.arange(10 * 4).reshape(10, 2, 2).astype(np.uint8)
    keep = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], bool)
    dest = np.zeros((keep.sum(), 2, 2), np.uint8)
    copy_rows(src, keep, dest, chunk=2)
    np.testing.assert_array_equal(dest, src[keep])


def test_check_rejected_fraction():
    import pandas as pd

    rejected = pd.DataFrame({"path": ["a.png", "b.png"], "reason": ["missing file", "empty file"]})
    check_rejected(rejected, 40, 0.05)  # 5 %: allowed
    with pytest.raises(ValueError, match=r"2 of 10 images rejected \(20.0%\), more than "
                                         r"prepare\.max_rejected_fraction = 0\.1; first: "
                                         r"a\.png: missing file; b\.png: empty file"):
        check_rejected(rejected, 10, 0.1)


def test_read_pixels_maps_prepares_array_and_checks_it_against_the_index(tmp_path):
    pixels = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    write_npy(pixels, tmp_path / "pixels.npy")
    read = read_pixels(tmp_path / "pixels.npy", n_rows=3)
    assert isinstance(read, np.memmap)  # mapped, not read: pixels.npy can be GBs
    np.testing.assert_array_equal(read, pixels)


def _saved(save, array: np.ndarray) -> bytes:
    """The bytes ``save`` (np.save, np.savez) writes for ``array``."""
    buffer = io.BytesIO()
    save(buffer, array)
    return buffer.getvalue()


IMAGES = np.zeros((3, 4, 4), np.uint8)


@pytest.mark.parametrize(("content", "said"), [
    # another prepare run's pixels: a row of the index would index past the end, or
    # silently read another image
    (np.zeros((2, 4, 4), np.uint8), r"2 images, the index 3 rows"),
    (np.zeros((4, 4, 4), np.uint8), r"4 images, the index 3 rows"),
    (np.zeros((3, 4, 4), np.float32), r"a float32 array of shape \(3, 4, 4\), not uint8"),
    (np.zeros((3, 16), np.uint8), r"a uint8 array of shape \(3, 16\), not uint8 images"),
    (b"version https://git-lfs.github.com/spec/v1\n", r"not a readable \.npy array"),
    (b"", r"not a readable \.npy array"),
    (_saved(np.savez, IMAGES), r"not a readable \.npy array"),
    # cut short: the header promises more bytes than the file has
    (_saved(np.save, IMAGES)[:100], r"not a readable \.npy array"),
], ids=["fewer", "more", "float", "2-d", "lfs-pointer", "empty", "npz", "cut-short"])
def test_read_pixels_names_the_file_and_the_stage_to_rerun(tmp_path, content, said):
    path = tmp_path / "pixels.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_npy(content, path)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: {said}.*; rerun prepare "
                       r"\(dvc repro prepare\)$"):
        read_pixels(path, n_rows=3)


def test_read_pixels_of_a_missing_file_says_which_stage_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pixels\.npy: missing; rerun prepare"):
        read_pixels(tmp_path / "pixels.npy", n_rows=3)


def test_workers_are_not_forked_from_a_process_running_torch(tmp_path):
    """torch's OpenMP pool is not fork-safe: a worker forked from it can hang."""
    import torch  # noqa: F401  (what the test runner and a notebook have loaded)

    from biaslab.data.prepare import _start_method

    assert _start_method() == "forkserver"
    paths = []
    for i in range(40):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((16, 16), i * 5, dtype=np.uint8)).save(path)
        paths.append(str(path))
    out = np.zeros((40, 8, 8), dtype=np.uint8)
    assert prepare_files(paths, 8, out, workers=2) == [None] * 40
    assert out[39, 0, 0] == 195
