"""biaslab.sources: the four file sources on generated fixtures (corrupt, missing, escaping
paths included) and the nih source on the real NIH table with stand-in images."""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biaslab.config import ConfigError, parse_section
from biaslab.sources import (
    load_csv_source,
    load_folder_source,
    load_imagefolder_source,
    load_nih_source,
    load_source,
)
from biaslab.sources.nih import nih_index, read_nih_table
from tests.conftest import SHARED

NIH_TABLE = SHARED / "data" / "nih_metadata" / "Data_Entry_2017_v2020.csv.gz"
needs_nih = pytest.mark.skipif(not NIH_TABLE.exists(),
                               reason=f"real NIH table not available at {NIH_TABLE}")
COLUMNS = {"patient": "patient_id", "sex": "sex", "age": "age", "attributes": []}
INDEX_HEAD = ["image_id", "label", "patient_id", "source"]


def _image(path: Path, value: int = 128, size=(20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def _check_contract(index: pd.DataFrame, paths: list[str], root: Path) -> None:
    assert index.columns.tolist()[:4] == INDEX_HEAD
    assert index["label"].dtype == np.int8 and set(index["label"]) <= {0, 1}
    assert str(index["patient_id"].dtype) == "string"
    assert len(paths) == len(index)
    real_root = os.path.realpath(root)
    for rel, path in zip(index["source"], paths, strict=True):
        assert path == os.path.realpath(root / rel) and path.startswith(real_root + os.sep)


# ---------------------------------------------------------------- folder
@pytest.fixture
def folder_root(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "valid", "test"):
        for cls, n in (("malade", 3), ("sain", 2)):
            for i in range(n):
                _image(root / split / cls / f"{split}-{cls}-{i}.png")
    (root / "train" / "sain" / "notes.txt").write_text("not an image")
    (root / "train" / "sain" / ".hidden.png").write_bytes(b"")
    _image(tmp_path / "outside.png")
    (root / "train" / "sain" / "link.png").symlink_to(tmp_path / "outside.png")
    pd.DataFrame({
        "path": ["train-malade-0.png", "valid/sain/valid-sain-1.png", "test-sain-0.png"],
        "patient_id": ["p1", "p2", "p3"], "sex": ["Homme", "female", "?"],
        "age": ["57", "62Y", "abc"],
    }).to_csv(root / "metadata.csv", index=False)
    return root


def _folder(root, **kw):
    args = {"positive_folder": "malade", "table": "metadata.csv", "path_column": "path",
            "columns": COLUMNS, "age_bins": [40, 60]} | kw
    return load_folder_source(root, **args)


def test_folder_source_labels_splits_and_metadata(folder_root):
    index, paths, rejected, issues = _folder(folder_root)
    _check_contract(index, paths, folder_root)
    assert len(index) == 15  # 3 splits x 5 images; txt and hidden files are not images
    assert (index["label"] == index["source"].str.contains("/malade/")).all()
    assert index.groupby("source_split").size().to_dict() == {"test": 5, "train": 5, "val": 5}
    row = index.set_index("image_id").loc["train-malade-0"]
    assert (row["patient_id"], row["sex"], row["age"], row["age_group"]) == ("p1", "M", 57,
                                                                             "40-59")
    assert index.set_index("image_id").loc["valid-sain-1", "sex"] == "F"
    assert issues["value"].tolist() == ["?", "abc"]
    # the symlink out of the root is rejected, not followed
    assert rejected.values.tolist() == [["train/sain/link.png",
                                         "outside the data root (.. or a symbolic link out)"]]


def test_folder_source_without_split_level_or_table(tmp_path):
    for cls in ("yes", "no"):
        _image(tmp_path / cls / "a.png")
    index, paths, rejected, _ = load_folder_source(
        tmp_path, positive_folder="yes", table="metadata.csv", path_column="path",
        columns=COLUMNS, age_bins=[40])
    assert index["label"].tolist() == [0, 1] and "source_split" not in index
    assert index["patient_id"].isna().all() and rejected.empty


def test_folder_source_errors_name_the_problem(folder_root):
    with pytest.raises(ValueError, match=r"data\.positive_folder = 'sick'.*class folders: "
                                         r"\['malade', 'sain'\]"):
        _folder(folder_root, positive_folder="sick")
    with pytest.raises(ValueError, match=r"folder .*train/malade is neither a split folder"):
        _folder(folder_root / "train", positive_folder="sick")
    (folder_root / "extra").mkdir()
    with pytest.raises(ValueError, match=r"folder .*extra is neither a split folder"):
        _folder(folder_root)


# ---------------------------------------------------------------- imagefolder
@pytest.fixture
def imagenet_root(tmp_path):
    for cls, n in (("n01440764", 3), ("n02102040", 2), ("n02979186", 4)):
        for i in range(n):
            _image(tmp_path / cls / f"{cls}_{i}.JPEG")
    return tmp_path


def test_imagefolder_two_classes(imagenet_root):
    index, paths, _, _ = load_imagefolder_source(imagenet_root, positive_class="n02102040",
                                                 negative_class="n01440764")
    _check_contract(index, paths, imagenet_root)
    assert index.groupby("class_name")["label"].agg(["size", "max"]).values.tolist() == [
        [3, 0], [2, 1]]


def test_imagefolder_one_vs_rest(imagenet_root):
    index, _, _, _ = load_imagefolder_source(imagenet_root, positive_class="n02979186",
                                             negative_class="rest")
    assert len(index) == 9 and index["label"].sum() == 4


def test_imagefolder_unknown_class_lists_classes(imagenet_root):
    with pytest.raises(ValueError, match=r"data\.positive_class = 'cat'.*n01440764, n02102040"):
        load_imagefolder_source(imagenet_root, positive_class="cat", negative_class="rest")


# ---------------------------------------------------------------- csv
@pytest.fixture
def csv_root(tmp_path):
    root = tmp_path / "data"
    for name in ("a.png", "b.png", "sub/c.png", "d.png"):
        _image(root / name)
    _image(tmp_path / "secret.png")
    (root / "escape.png").symlink_to(tmp_path / "secret.png")
    pd.DataFrame({
        "file": ["a.png", "b.png", "sub/c.png", "../secret.png", str(tmp_path / "secret.png"),
                 "missing.png", "escape.png", "d.png", "sub"],
        "y": ["1", "0", "true", "1", "1", "0", "1", "maybe", "0"],
        "pid": ["1", "1", "2", "3", "4", "5", "6", "7", "8"],
        "gender": ["M", "M", "female", "F", "F", "M", "F", "M", "F"],
        "years": ["30", "31", "70", "1", "2", "3", "4", "5", "6"],
        "view": ["PA", "PA", "AP", "PA", "PA", "PA", "PA", "PA", "PA"],
    }).to_csv(root / "table.csv", index=False)
    return root


def _csv(root, **kw):
    args = {"table": "table.csv", "path_column": "file", "label_column": "y",
            "columns": {"patient": "pid", "sex": "gender", "age": "years",
                        "attributes": ["view"]}, "views": [], "age_bins": [40]} | kw
    return load_csv_source(root, **args)


def test_csv_source_configurable_columns_and_rejections(csv_root):
    index, paths, rejected, issues = _csv(csv_root)
    _check_contract(index, paths, csv_root)
    assert index["image_id"].tolist() == ["a", "b", "c"]
    assert index["label"].tolist() == [1, 0, 1]
    assert index["sex"].tolist() == ["M", "M", "F"] and index["view"].tolist() == ["PA"] * 2 + [
        "AP"]
    assert index["age_group"].tolist() == ["<40", "<40", "40+"]
    assert issues.empty
    assert dict(rejected.values.tolist()) == {
        "../secret.png": "outside the data root (.. or a symbolic link out)",
        str(csv_root.parent / "secret.png"): "absolute path (paths must be relative to the "
                                             "data root)",
        "missing.png": "missing file",
        "escape.png": "outside the data root (.. or a symbolic link out)",
        "d.png": "label maybe is not 0/1",
        "sub": "not a file",
    }


def test_csv_view_filter(csv_root):
    index, _, _, _ = _csv(csv_root, views=["AP"])
    assert index["image_id"].tolist() == ["c"]


@pytest.mark.parametrize(("key", "column"), [("path_column", "nope"), ("label_column", "nope")])
def test_csv_missing_column_is_named(csv_root, key, column):
    with pytest.raises(ValueError, match=rf"data\.{key} = 'nope': no such column in .*table\.csv"
                                         r"; available: \['file', 'y'"):
        _csv(csv_root, **{key: column})


def test_load_source_dispatch_and_root_errors(csv_root):
    cfg = parse_section("data", {"source": "csv", "root": str(csv_root), "table": "table.csv",
                                 "path_column": "file", "label_column": "y"})
    src = load_source(cfg, csv_root)
    assert len(src.index) == 3 and len(src.paths) == 3 and src.images is None
    with pytest.raises(FileNotFoundError, match=r"data\.root: .*nowhere is not a folder"):
        load_source(cfg, csv_root / "nowhere")
    with pytest.raises(ConfigError, match=r"data\.root = ''.*the folder of the csv data"):
        parse_section("data", {"source": "csv"})


def test_nested_options_equal_flat_keys(csv_root):
    flat = parse_section("data", {"source": "csv", "root": "x", "label_column": "y"})
    nested = parse_section("data", {"source": "csv", "root": "x", "options": {"label_column": "y"}})
    assert flat == nested


# ---------------------------------------------------------------- nih
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n")


@pytest.fixture
def nih_root(tmp_path):
    """A 2017-style table (header quirk and trailing commas) and two images*/ folders."""
    rows = [("00000001_000.png", "Cardiomegaly", 0, 1, "57", "M", "PA"),
            ("00000001_001.png", "Cardiomegaly|Emphysema", 1, 1, "58", "M", "PA"),
            ("00000002_000.png", "No Finding", 0, 2, "413", "F", "AP"),
            ("00000003_000.png", "Hernia", 0, 3, "81", "F", "PA"),
            ("00000004_000.png", "No Finding", 0, 4, "30", "M", "AP")]
    lines = [NIH_HEADER] + [",".join(map(str, r)) + ",2500,2048,0.143,0.143,\n" for r in rows]
    (tmp_path / "Data_Entry_2017.csv").write_text("".join(lines))
    for i, (name, *_rest) in enumerate(rows[:4]):  # the last image is missing
        _image(tmp_path / f"images_00{1 + i // 2}" / "images" / name)
    return tmp_path


def test_nih_source_any_finding(nih_root):
    index, paths, rejected, issues = load_nih_source(nih_root, finding="any", views=[],
                                                     age_bins=[40, 60, 80])
    _check_contract(index, paths, nih_root)
    assert index["label"].tolist() == [1, 1, 0, 1]
    assert index["source"].tolist()[2] == "images_002/images/00000002_000.png"
    assert index["patient_id"].tolist() == ["1", "1", "2", "3"]
    assert index["age_group"].tolist()[:2] == ["40-59", "40-59"]
    assert pd.isna(index["age"].iloc[2]) and index["age_group"].tolist()[3] == "80+"
    assert issues[["table_row", "value"]].values.tolist() == [[2, "413"]]
    assert rejected.values.tolist() == [["00000004_000.png", "missing file"]]


def test_nih_source_one_finding_and_view_filter(nih_root):
    index, _, _, _ = load_nih_source(nih_root, finding="Emphysema", views=["PA"], age_bins=[40])
    assert index["image_id"].tolist() == ["00000001_000", "00000001_001", "00000003_000"]
    assert index["label"].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"data\.finding = 'Emphysem'.*Cardiomegaly, "
                                         r"Emphysema, Hernia, No Finding"):
        load_nih_source(nih_root, finding="Emphysem", views=[], age_bins=[40])


@needs_nih
def test_nih_real_table_as_shipped():
    table = read_nih_table(NIH_TABLE)
    assert len(table) == 112_120
    index, issues = nih_index(table, finding="any", views=[], age_bins=[40, 60, 80])
    assert index["patient_id"].nunique() == 30_805
    assert index["sex"].value_counts().to_dict() == {"M": 63_340, "F": 48_780}
    assert (1 - index["label"].mean()) == pytest.approx(0.538, abs=1e-3)  # 53.8 % No Finding
    assert set(index["view"]) == {"PA", "AP"} and index["age_group"].notna().all()
    assert len(issues) == 0


@needs_nih
def test_nih_source_on_real_table_with_stand_in_images(tmp_path):
    (tmp_path / NIH_TABLE.name).symlink_to(NIH_TABLE)  # the real table, read as it is
    names = read_nih_table(NIH_TABLE)["file"].iloc[[0, 1, 2, 500, 90_000]].tolist()
    for i, name in enumerate(names):
        _image(tmp_path / ("images_001" if i < 3 else "images_012") / "images" / name, 10 * i)
    shutil.copy(tmp_path / "images_001" / "images" / names[0], tmp_path / "unrelated.png")
    index, paths, rejected, _ = load_nih_source(tmp_path, finding="Cardiomegaly", views=[],
                                                age_bins=[40, 60, 80])
    _check_contract(index, paths, tmp_path)
    assert Path(paths[0]).name == names[0] and index["image_id"].tolist()[0] == "00000001_000"
    assert index["label"].tolist()[:2] == [1, 1]  # 00000001_000/001 show Cardiomegaly
    assert len(index) == 5 and len(rejected) == 112_120 - 5
    assert (rejected["reason"] == "missing file").all()
