"""Hostile inputs to prepare (issue 11): duplicate images, empty or one-class data, images too
small or too elongated, the table row of each reject, and temporaries left by a killed run.

Every file is generated here, in a temporary folder; library tests call biaslab.data.prepare (and
biaslab.data.images) with a source built by hand, stage tests run ``python -m stages.prepare`` on
a csv table.
"""

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from biaslab.data.images import check_shape, decode_file
from biaslab.data.prepare import (
    check_usable,
    decode_source,
    duplicate_reasons,
    prepare_files,
    write_pixels,
)
from biaslab.data.sources._files import empty_rejected
from tests.conftest import ROOT

SIZE = 8
CONFLICT = "one image cannot be both 0 and 1"


def _image(path, seed, shape=(20, 24)):
    """A random gray PNG at ``path`` (distinct seeds: distinct pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _source(root, rels, labels, table_rows=None, images=None):
    """A file source as biaslab.data.sources yields it (paths absolute), built by hand."""
    index = pd.DataFrame({"image_id": [f"i{i}" for i in range(len(labels))],
                          "label": np.asarray(labels, dtype=np.int8),
                          "patient_id": pd.Series([None] * len(labels), dtype="string"),
                          "source": rels})
    paths = None if images is not None else [os.path.join(root, r) for r in rels]
    return SimpleNamespace(index=index, paths=paths, images=images, table_rows=table_rows,
                           rejected=empty_rejected())


def _decode(src, **kwargs):
    out = np.zeros((len(src.index), SIZE, SIZE), dtype=np.uint8)
    return decode_source(src, SIZE, out, workers=1, progress=False, **kwargs)


# ------------------------------------------------------------------------------ duplicates


def test_duplicate_reasons_keep_the_first_copy_and_name_it():
    reasons = duplicate_reasons(["a", None, "a", "b", "a", None], [1, 0, 1, 0, 1, 1],
                                ["x.png", "y.png", "x2.png", "z.png", "x3.png", "w.png"],
                                [3, 4, 5, 6, 7, 8], same="file")
    assert reasons == [None, None, "duplicate of x.png (table row 3)", None,
                       "duplicate of x.png (table row 3)", None]


def test_duplicate_reasons_without_a_table_name_the_path_only():
    reasons = duplicate_reasons([b"d", b"d"], [0, 0], ["a/1.png", "b/1.png"], [None, None],
                                same="file")
    assert reasons == [None, "duplicate of a/1.png"]


def test_duplicate_reasons_contradictory_labels_are_an_error_naming_both():
    with pytest.raises(ValueError, match=(
            r"^a\.png \(table row 0\) has label 0 and b\.png \(table row 2\) label 1, but they "
            r"are the same file: one image cannot be both 0 and 1; correct the label of one and "
            r"remove the other \(2 such pairs, this is the first\)$")):
        duplicate_reasons(["k", "j", "k", "k"], [0, 1, 1, 1],
                          ["a.png", "c.png", "b.png", "d.png"], [0, 1, 2, 3], same="file")


def test_the_same_file_listed_twice_is_kept_once(tmp_path):
    _image(tmp_path / "good" / "img000.png", 0)
    _image(tmp_path / "good" / "img001.png", 1)
    src = _source(tmp_path, ["good/img000.png", "good/img001.png", "good/img000.png"],
                  [1, 0, 1], table_rows=[0, 1, 2])
    keep, rejected = _decode(src)
    assert keep.tolist() == [True, True, False]
    assert rejected.columns.tolist() == ["path", "table_row", "reason"]
    assert rejected.values.tolist() == [
        ["good/img000.png", 2, "duplicate of good/img000.png (table row 0)"]]


def test_a_path_through_dotdot_is_the_same_file(tmp_path):
    _image(tmp_path / "good" / "img000.png", 0)
    src = _source(tmp_path, ["good/img000.png", "h/../good/img000.png"], [0, 0],
                  table_rows=[0, 1])
    keep, rejected = _decode(src)
    assert keep.tolist() == [True, False]
    assert rejected["reason"].tolist() == ["duplicate of good/img000.png (table row 0)"]


def test_the_same_file_with_two_labels_stops_before_decoding(tmp_path):
    src = _source(tmp_path, ["good/img000.png", "h/../good/img000.png"], [0, 1],
                  table_rows=[4, 9])  # no such file: the paths alone tell they are one
    with pytest.raises(ValueError, match=(
            r"good/img000\.png \(table row 4\) has label 0 and h/\.\./good/img000\.png "
            rf"\(table row 9\) label 1, but they are the same file: {CONFLICT}")):
        _decode(src)


def test_same_pixels_under_two_names_same_label_one_is_rejected(tmp_path):
    _image(tmp_path / "a.png", 0)
    _image(tmp_path / "b.png", 1)
    _image(tmp_path / "copy" / "a.png", 0)  # same pixels, another name
    src = _source(tmp_path, ["a.png", "b.png", "copy/a.png"], [1, 0, 1])
    keep, rejected = _decode(src)
    assert keep.tolist() == [True, True, False]
    assert rejected["reason"].tolist() == ["duplicate of a.png"]
    assert rejected["table_row"].isna().all()  # no table: the row is left empty


def test_same_pixels_under_two_names_with_two_labels_is_an_error(tmp_path):
    _image(tmp_path / "a.png", 0)
    _image(tmp_path / "b.png", 0)
    src = _source(tmp_path, ["a.png", "b.png"], [0, 1], table_rows=[0, 1])
    with pytest.raises(ValueError, match=(
            r"a\.png \(table row 0\) has label 0 and b\.png \(table row 1\) label 1, but they "
            rf"are the same image \(same pixels after preparation\): {CONFLICT}")):
        _decode(src)


def test_in_memory_duplicates_are_rejected_too():
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    images[2] = images[0]
    src = _source(None, ["digits/0", "digits/1", "digits/2"], [0, 1, 0], images=images)
    keep, rejected = _decode(src)
    assert keep.tolist() == [True, True, False]
    assert rejected["reason"].tolist() == ["duplicate of digits/0"]


def test_parallel_workers_hash_the_same(tmp_path):
    rels = [f"{i}.png" for i in range(40)]
    for i, rel in enumerate(rels):
        _image(tmp_path / rel, i % 25)  # 15 copies of earlier images
    digests = {}
    for workers in (1, 2):
        digests[workers] = []
        out = np.zeros((40, SIZE, SIZE), np.uint8)
        prepare_files([str(tmp_path / r) for r in rels], SIZE, out, workers=workers,
                      progress=False, digests=digests[workers])
    assert digests[1] == digests[2] and len(set(digests[1])) == 25


# ------------------------------------------------------------------- image size and shape


@pytest.mark.parametrize(
    ("w", "h", "reason"),
    [(1, 1, "too small: 1x1 px (prepare.min_side = 8)"),
     (7, 300, "too small: 7x300 px (prepare.min_side = 8)"),
     (10000, 10, "extreme aspect ratio: 10000x10 px, 1000:1 (prepare.max_aspect = 10)"),
     (8, 81, "extreme aspect ratio: 8x81 px, 10.1:1 (prepare.max_aspect = 10)"),
     (8, 8, None), (80, 8, None), (1024, 1024, None)],
)
def test_check_shape(w, h, reason):
    if reason is None:
        check_shape(w, h)
    else:
        with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
            check_shape(w, h)


def test_tiny_and_elongated_files_are_rejected_with_the_param_named(tmp_path):
    for name, shape in (("dot.png", (1, 1)), ("strip.png", (10, 10000)), ("ok.png", (20, 24)),
                        ("wide.png", (16, 100))):
        _image(tmp_path / name, 0, shape)
    src = _source(tmp_path, ["dot.png", "strip.png", "ok.png", "wide.png"], [0, 1, 0, 1])
    keep, rejected = _decode(src)
    assert keep.tolist() == [False, False, True, True]
    assert rejected["reason"].tolist() == [
        "too small: 1x1 px (prepare.min_side = 8)",
        "extreme aspect ratio: 10000x10 px, 1000:1 (prepare.max_aspect = 10)"]
    keep, rejected = _decode(src, min_side=1, max_aspect=5.0)  # 100x16 is 6.2:1
    assert keep.tolist() == [True, False, True, False]
    assert rejected["reason"].iloc[1] == ("extreme aspect ratio: 100x16 px, 6.2:1 "
                                          "(prepare.max_aspect = 5)")


# ------------------------------------------------------------- empty or one-class: no artifact


def test_check_usable_messages():
    none = pd.DataFrame({"path": [], "table_row": [], "reason": []})
    with pytest.raises(ValueError, match=r"^0 usable images in data.root = /d; 0 rejected: the "
                                         r"source lists no image"):
        check_usable([], none, total=0, max_rejected_fraction=0.05, where="data.root = /d")
    bad = pd.DataFrame({"path": ["a.png"], "table_row": [0], "reason": ["missing file"]})
    with pytest.raises(ValueError, match=r"^0 usable images in X; 1 rejected \(first: a\.png: "
                                         r"missing file\)$"):
        check_usable([], bad, total=1, max_rejected_fraction=1.0, where="X")
    with pytest.raises(ValueError, match=r"^every image has label 1 \(3 images, 1 rejected\) in "
                                         r"X; a classifier needs both 0 and 1: check "
                                         r"data\.label_column / data\.positive"):
        check_usable([1, 1, 1], bad, total=4, max_rejected_fraction=0.5, where="X")
    with pytest.raises(ValueError, match=r"1 of 3 images rejected"):  # the fraction comes first
        check_usable([1, 1], bad, total=3, max_rejected_fraction=0.1, where="X")
    check_usable([0, 1], bad, total=3, max_rejected_fraction=0.5, where="X")


def test_write_pixels_writes_nothing_for_one_class(tmp_path):
    for i in range(3):
        _image(tmp_path / f"{i}.png", i)
    src = _source(tmp_path, ["0.png", "1.png", "2.png"], [1, 1, 1])
    out = tmp_path / "out" / "pixels.npy"
    with pytest.raises(ValueError, match=r"every image has label 1 \(3 images, 0 rejected\)"):
        write_pixels(src, out, size=SIZE, max_rejected_fraction=0.0, where="X", workers=1,
                     progress=False)
    assert os.listdir(out.parent) == []  # no artifact, no temporary


def test_write_pixels_keeps_rows_contiguous_and_leaves_no_temporary(tmp_path):
    for i in range(4):
        _image(tmp_path / f"{i}.png", i)
    src = _source(tmp_path, ["0.png", "1.png", "0.png", "3.png", "2.png"], [0, 1, 0, 1, 0],
                  table_rows=[0, 1, 2, 3, 4])
    out = tmp_path / "out" / "pixels.npy"
    index, rejected = write_pixels(src, out, size=SIZE, max_rejected_fraction=0.5, where="X",
                                   workers=1, progress=False)
    assert index["source"].tolist() == ["0.png", "1.png", "3.png", "2.png"]
    assert rejected["table_row"].tolist() == [2]
    pixels = np.load(out)
    assert pixels.shape == (4, SIZE, SIZE)
    for row, name in enumerate(index["source"]):
        np.testing.assert_array_equal(pixels[row], decode_file(str(tmp_path / name), SIZE))
    assert os.listdir(out.parent) == ["pixels.npy"]


def test_write_pixels_removes_the_temporaries_of_a_killed_run(tmp_path):
    _image(tmp_path / "0.png", 0)
    _image(tmp_path / "1.png", 1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path / "out"
    out.mkdir()
    orphan = out / f".pixels.npy.tmp-{dead}-0a1b2c3d"  # as a kill -9 leaves it
    orphan.write_bytes(b"\0" * 4096)
    running = out / f".pixels.npy.tmp-{os.getpid()}-00000000"  # a live run's: left alone
    running.write_bytes(b"")
    other = out / f".index.parquet.tmp-{dead}-0a1b2c3d"  # another artifact's: not ours
    other.write_bytes(b"")
    write_pixels(_source(tmp_path, ["0.png", "1.png"], [0, 1]), out / "pixels.npy", size=SIZE,
                 max_rejected_fraction=0.0, where="X", workers=1, progress=False)
    assert sorted(os.listdir(out)) == sorted(["pixels.npy", running.name, other.name])


# ------------------------------------------------------------------- the stage, end to end


def _run(workdir, rows, prepare=None, columns=("path", "label")):
    """Write ``rows`` as data/metadata.csv and run the prepare stage on it."""
    root = workdir / "data"
    root.mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=list(columns)).to_csv(root / "metadata.csv", index=False)
    params = {"data": {"source": "csv", "root": "data"},
              "prepare": {"size": SIZE, "workers": 1, **(prepare or {})}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    outs = [f"--{n}=out/{n}.{ext}" for n, ext in (("pixels", "npy"), ("index", "parquet"),
                                                  ("rejected", "csv"), ("issues", "csv"))]
    return subprocess.run([sys.executable, "-m", "stages.prepare", *outs], cwd=workdir,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True)


def _images(workdir, n):
    for i in range(n):
        _image(workdir / "data" / "good" / f"img{i:03d}.png", i)


def _no_artifact(workdir):
    return not (workdir / "out").exists() or os.listdir(workdir / "out") == []


def test_stage_header_only_table_stops_with_a_message(tmp_path):
    proc = _run(tmp_path, [])
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "prepare: error: 0 usable images in data.root = data; 0 rejected: the source lists no "
        "image (an empty table, or no image file where it looks)")
    assert _no_artifact(tmp_path)


def test_stage_one_class_stops_before_writing(tmp_path):
    _images(tmp_path, 3)
    proc = _run(tmp_path, [(f"good/img{i:03d}.png", 1) for i in range(3)])
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith(
        "prepare: error: every image has label 1 (3 images, 0 rejected) in data.root = data; "
        "a classifier needs both")
    assert "Traceback" not in proc.stderr and _no_artifact(tmp_path)


def test_stage_duplicates_with_contradictory_labels_stop_it(tmp_path):
    _images(tmp_path, 3)
    rows = [("good/img000.png", 0, "p1"), ("good/img001.png", 1, "p2"),
            ("good/img002.png", 0, "p3"), ("h/../good/img000.png", 1, "p4")]
    proc = _run(tmp_path, rows, columns=("path", "label", "patient_id"))
    assert proc.returncode == 1
    assert "has label 0 and h/../good/img000.png" in proc.stderr
    assert "are the same file: one image cannot be both 0 and 1" in proc.stderr
    assert "Traceback" not in proc.stderr and _no_artifact(tmp_path)


def test_stage_duplicates_do_not_reach_the_index(tmp_path):
    _images(tmp_path, 4)
    (tmp_path / "data" / "copy.png").write_bytes(
        (tmp_path / "data" / "good" / "img001.png").read_bytes())
    rows = [("good/img000.png", 0, "p1"), ("good/img001.png", 1, "p2"),
            ("good/img002.png", 0, "p3"), ("good/img000.png", 0, "p9"),
            ("copy.png", 1, "p8"), ("good/img003.png", 1, "p4")]
    proc = _run(tmp_path, rows, {"max_rejected_fraction": 0.5},
                columns=("path", "label", "patient_id"))
    assert proc.returncode == 0, proc.stderr
    assert "4 images (csv)" in proc.stdout and "2 rejected (2 duplicate(s))" in proc.stdout
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    assert index["source"].tolist() == [f"good/img00{i}.png" for i in range(4)]
    assert index["patient_id"].tolist() == ["p1", "p2", "p3", "p4"]
    rejected = pd.read_csv(tmp_path / "out" / "rejected.csv", keep_default_na=False)
    assert rejected.columns.tolist() == ["path", "table_row", "reason"]
    assert rejected["path"].tolist() == ["good/img000.png", "copy.png"]
    assert rejected["reason"].str.match(r"duplicate of good/img00[01]\.png").all()


def test_stage_rejected_rows_carry_the_table_row_as_issues_do(tmp_path):
    _images(tmp_path, 3)
    _image(tmp_path / "data" / "dot.png", 0, (1, 1))
    rows = [("good/img000.png", 0, "40"), ("../out.png", 1, "50"), ("good/img001.png", 1, "-5"),
            ("good/img000.png", 0, "60"), ("dot.png", 1, "70"), ("good/img002.png", 1, "x")]
    proc = _run(tmp_path, rows, {"max_rejected_fraction": 0.5},
                columns=("path", "label", "age"))
    assert proc.returncode == 0, proc.stderr
    rejected = pd.read_csv(tmp_path / "out" / "rejected.csv")
    assert rejected.values.tolist() == [
        ["../out.png", 1, "outside the data root (.. or a symbolic link out)"],
        ["good/img000.png", 3, "duplicate of good/img000.png (table row 0)"],
        ["dot.png", 4, "too small: 1x1 px (prepare.min_side = 8)"]]
    issues = pd.read_csv(tmp_path / "out" / "issues.csv")
    assert issues[["table_row", "value", "reason"]].values.tolist() == [
        [5, "x", "unparseable age"], [2, "-5", "implausible age (outside 0..120 years)"]]
