"""biaslab.data.sources: the four file sources on generated fixtures (corrupt, missing, escaping
paths included) and the nih source on the real NIH table with stand-in images."""

import gzip
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biaslab.config import ConfigError, parse_section
from biaslab.data.sources import (
    load_csv_source,
    load_folder_source,
    load_imagefolder_source,
    load_nih_source,
    load_source,
)
from biaslab.data.sources.nih import nih_index, read_nih_table
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
    src = _folder(folder_root)
    index, rejected, issues = src.index, src.rejected, src.issues
    _check_contract(index, src.paths, folder_root)
    assert len(index) == 15  # 3 splits x 5 images; txt and hidden files are not images
    assert (index["label"] == index["source"].str.contains("/malade/")).all()
    assert index.groupby("source_split").size().to_dict() == {"test": 5, "train": 5, "val": 5}
    row = index.set_index("image_id").loc["train-malade-0"]
    assert (row["patient_id"], row["sex"], row["age"], row["age_group"]) == ("p1", "M", 57,
                                                                             "40-59")
    assert index.set_index("image_id").loc["valid-sain-1", "sex"] == "F"
    assert issues["value"].tolist() == ["?", "abc"]
    # the symlink out of the root is rejected, not followed
    assert rejected[["path", "reason"]].values.tolist() == [
        ["train/sain/link.png", "outside the data root (.. or a symbolic link out)"]]
    # each image's row of the metadata table (None: the table does not describe it)
    rows = dict(zip(index["source"], src.table_rows, strict=True))
    assert (rows["train/malade/train-malade-0.png"], rows["valid/sain/valid-sain-1.png"],
            rows["test/sain/test-sain-0.png"], rows["test/sain/test-sain-1.png"]) == (0, 1, 2, None)
    assert issues["table_row"].tolist() == [2, 2]  # '?' and 'abc', both in test-sain-0's row


def test_folder_source_without_split_level_or_table(tmp_path):
    for cls in ("yes", "no"):
        _image(tmp_path / cls / "a.png")
    src = load_folder_source(
        tmp_path, positive_folder="yes", table="metadata.csv", path_column="path",
        columns=COLUMNS, age_bins=[40])
    index = src.index
    assert index["label"].tolist() == [0, 1] and "source_split" not in index
    assert index["patient_id"].isna().all() and src.rejected.empty
    assert src.table_rows is None  # no table: its images come from the listing alone


def test_folder_source_errors_name_the_problem(folder_root):
    with pytest.raises(ValueError, match=r"data\.positive_folder = 'sick'.*class folders: "
                                         r"\['malade', 'sain'\]"):
        _folder(folder_root, positive_folder="sick")
    with pytest.raises(ValueError, match=r"folder .*train/malade is neither a split folder"):
        _folder(folder_root / "train", positive_folder="sick")
    (folder_root / "extra").mkdir()
    with pytest.raises(ValueError, match=r"folder .*extra is neither a split folder"):
        _folder(folder_root)


@pytest.fixture
def same_names_root(tmp_path):
    """train/malade/x0.png and test/sain/x0.png: two images with one base name."""
    root = tmp_path / "data"
    for rel in ("train/malade/x0.png", "train/sain/x1.png", "test/sain/x0.png",
                "test/malade/x2.png"):
        _image(root / rel)
    return root


def _metadata(root, paths, sex=("M", "F", "F", "M")):
    pd.DataFrame({"path": list(paths), "patient_id": [f"p{i}" for i in range(len(paths))],
                  "sex": list(sex)[:len(paths)], "age": ["30"] * len(paths)}).to_csv(
        root / "metadata.csv", index=False)


def test_folder_metadata_joins_on_the_path_not_the_base_name(same_names_root):
    _metadata(same_names_root, ["train/malade/x0.png", "./test/sain/x0.png",
                                "test\\malade\\x2.png", "x1.png"])
    index = _folder(same_names_root).index
    got = index.set_index("source")[["patient_id", "sex"]].to_dict("index")
    assert got == {"test/malade/x2.png": {"patient_id": "p2", "sex": "F"},
                   "test/sain/x0.png": {"patient_id": "p1", "sex": "F"},
                   "train/malade/x0.png": {"patient_id": "p0", "sex": "M"},
                   "train/sain/x1.png": {"patient_id": "p3", "sex": "M"}}


def test_folder_metadata_ambiguous_base_name_is_an_error(same_names_root):
    _metadata(same_names_root, ["x0.png", "x1.png"])
    table = same_names_root / "metadata.csv"
    with pytest.raises(ValueError, match=(
            rf"^{table}: base name x0\.png matches 2 images \(test/sain/x0\.png, "
            r"train/malade/x0\.png\); give paths relative to data\.root$")):
        _folder(same_names_root)


def test_folder_metadata_naming_no_image_is_an_error(same_names_root):
    _metadata(same_names_root, ["data/train/malade/x0.png", "elsewhere/x1.png"])
    with pytest.raises(ValueError, match=r"metadata\.csv: no row names an image under data\.root "
                                         r"\(first: 'data/train/malade/x0\.png'\)"):
        _folder(same_names_root)


@pytest.mark.parametrize(("paths", "rows", "spelt"), [
    (["train/malade/x0.png", "x1.png", "./train/malade/x0.png"], (0, 2),
     "'train/malade/x0.png' and './train/malade/x0.png'"),
    (["x1.png", "test/malade/x2.png", "train/sain/x1.png"], (0, 2),
     "'x1.png' and 'train/sain/x1.png'"),
])
def test_folder_metadata_two_rows_of_one_image_is_an_error(same_names_root, paths, rows, spelt):
    _metadata(same_names_root, paths)
    image = "train/malade/x0.png" if "x0" in spelt else "train/sain/x1.png"
    table = re.escape(str(same_names_root / "metadata.csv"))
    with pytest.raises(ValueError, match=(
            rf"^{table}: table rows {rows[0]} and {rows[1]} both describe image "
            rf"{re.escape(image)} \(as {re.escape(spelt)}; rows count from 0 after the "
            r"header\); keep one row per image$")):
        _folder(same_names_root)


def test_folder_rejected_image_carries_its_metadata_row(folder_root):
    pd.DataFrame({"path": ["train-malade-0.png", "train/sain/link.png"],
                  "patient_id": ["p1", "p2"]}).to_csv(folder_root / "metadata.csv", index=False)
    src = _folder(folder_root)
    assert src.rejected.values.tolist() == [
        ["train/sain/link.png", 1, "outside the data root (.. or a symbolic link out)"]]
    assert sorted(r for r in src.table_rows if r is not None) == [0]


def test_folder_metadata_missing_columns_are_named(folder_root):
    with pytest.raises(ValueError, match=r"metadata\.csv \(data\.path_column\): column\(s\) "
                                         r"\['file'\] not found; available: \['path', "):
        _folder(folder_root, path_column="file")
    columns = {**COLUMNS, "attributes": ["view"]}
    with pytest.raises(ValueError, match=r"metadata\.csv \(data\.attributes\): column\(s\) "
                                         r"\['view'\] not found"):
        _folder(folder_root, columns=columns)


# ---------------------------------------------------------------- imagefolder
@pytest.fixture
def imagenet_root(tmp_path):
    for cls, n in (("n01440764", 3), ("n02102040", 2), ("n02979186", 4)):
        for i in range(n):
            _image(tmp_path / cls / f"{cls}_{i}.JPEG")
    return tmp_path


def test_imagefolder_two_classes(imagenet_root):
    src = load_imagefolder_source(imagenet_root, positive_class="n02102040",
                                  negative_class="n01440764")
    index = src.index
    _check_contract(index, src.paths, imagenet_root)
    assert src.table_rows is None
    assert index.groupby("class_name")["label"].agg(["size", "max"]).values.tolist() == [
        [3, 0], [2, 1]]


def test_imagefolder_one_vs_rest(imagenet_root):
    index = load_imagefolder_source(imagenet_root, positive_class="n02979186",
                                    negative_class="rest").index
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
    src = _csv(csv_root)
    index, rejected, issues = src.index, src.rejected, src.issues
    _check_contract(index, src.paths, csv_root)
    assert src.table_rows == [0, 1, 2]
    assert index["image_id"].tolist() == ["a", "b", "c"]
    assert index["label"].tolist() == [1, 0, 1]
    assert index["sex"].tolist() == ["M", "M", "F"] and index["view"].tolist() == ["PA"] * 2 + [
        "AP"]
    assert index["age_group"].tolist() == ["<40", "<40", "40+"]
    assert issues.empty
    assert dict(rejected[["path", "reason"]].values.tolist()) == {
        "../secret.png": "outside the data root (.. or a symbolic link out)",
        str(csv_root.parent / "secret.png"): "absolute path (paths must be relative to the "
                                             "data root)",
        "missing.png": "missing file",
        "escape.png": "outside the data root (.. or a symbolic link out)",
        "d.png": "label maybe is not 0/1",
        "sub": "not a file",
    }
    assert rejected["table_row"].tolist() == [3, 4, 5, 6, 7, 8]  # as issues.csv numbers rows


def test_csv_view_filter(csv_root):
    src = _csv(csv_root, views=["AP"])
    assert src.index["image_id"].tolist() == ["c"]
    assert src.table_rows == [2]  # the row in the table, not in the filtered one


@pytest.mark.parametrize(("key", "column"), [("path_column", "nope"), ("label_column", "nope")])
def test_csv_missing_column_is_named(csv_root, key, column):
    with pytest.raises(ValueError, match=rf"table\.csv \(data\.{key}\): column\(s\) \['nope'\] "
                                         r"not found; available: \['file', 'y', .*\]; "
                                         rf"set data\.{key} to the table's column of "):
        _csv(csv_root, **{key: column})


LATIN1_DEEP = b"path,y\n" + b"a.png,1\n" * 50_000 + "\u00e9.png,1\n".encode("latin-1")


@pytest.mark.parametrize(("data", "why"), [
    ("path,y\nd\u00e9j\u00e0.png,1\n".encode("latin-1"),
     r"not UTF-8 text \(byte 0xe9 at offset 8, line 2\)"),
    # the offset is the file's, not that of the part pandas had in its buffer
    (LATIN1_DEEP, r"not UTF-8 text \(byte 0xe9 at offset 400007, line 50002\)"),
    ("path,y\na.png,1\n".encode("utf-16"),
     r"not UTF-8 text but UTF-16 \(it starts with a UTF-16 byte order mark\)"),
    ("path,y\na.png,1\n".encode("utf-16-le"),
     r"not UTF-8 text \(NUL bytes in the header: UTF-16 without a byte order mark\?\)"),
])
def test_a_table_not_in_utf8_is_one_error_naming_the_file(tmp_path, data, why):
    (tmp_path / "table.csv").write_bytes(data)
    table = re.escape(str(tmp_path / "table.csv"))
    with pytest.raises(ValueError, match=rf"^{table}: {why}; save it as UTF-8 \(e\.g\. from "
                                         r"Excel: CSV UTF-8\)$"):
        _csv(tmp_path, path_column="path", columns=COLUMNS)


@pytest.mark.parametrize(("data", "why"), [
    (b"", r"empty file \(no header line\); a table needs a header line naming its columns"),
    (b"\n\n", r"empty file \(no header line\)"),
    # a comma inside an unquoted value: pandas' own message names neither the file nor the fix
    (b"path,y\na.png,1\nb.png,0\nc, d.png,1\n",
     r"line 4 has 3 fields, the header 2; quote a value that holds the separator"),
    (b'path,y\n"a.png,1\n', r"EOF inside string starting at row 1"),
])
def test_a_table_pandas_cannot_parse_is_one_error_naming_the_file(tmp_path, data, why):
    (tmp_path / "table.csv").write_bytes(data)
    table = re.escape(str(tmp_path / "table.csv"))
    with pytest.raises(ValueError, match=rf"^{table}: {why}") as caught:
        _csv(tmp_path, path_column="path", columns=COLUMNS)
    assert "\n" not in str(caught.value)  # one line, as the stage prints it


def test_a_utf8_table_with_a_byte_order_mark_reads_as_without(csv_root):
    table = csv_root / "table.csv"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes())
    assert _csv(csv_root).index["image_id"].tolist() == ["a", "b", "c"]
    folder = csv_root.parent / "folder"
    _image(folder / "yes" / "a.png")
    _image(folder / "no" / "b.png")
    (folder / "metadata.csv").write_bytes("\ufeffpath,sex\na.png,F\n".encode())
    assert _folder(folder, positive_folder="yes").index["sex"].tolist() == [pd.NA, "F"]


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
    src = load_nih_source(nih_root, finding="any", views=[], age_bins=[40, 60, 80])
    index, rejected, issues = src.index, src.rejected, src.issues
    _check_contract(index, src.paths, nih_root)
    assert src.table_rows == [0, 1, 2, 3]
    assert index["label"].tolist() == [1, 1, 0, 1]
    assert index["source"].tolist()[2] == "images_002/images/00000002_000.png"
    assert index["patient_id"].tolist() == ["1", "1", "2", "3"]
    assert index["age_group"].tolist()[:2] == ["40-59", "40-59"]
    assert pd.isna(index["age"].iloc[2]) and index["age_group"].tolist()[3] == "80+"
    assert issues[["table_row", "value"]].values.tolist() == [[2, "413"]]
    assert rejected.values.tolist() == [["00000004_000.png", 4, "missing file"]]


def test_nih_source_one_finding_and_view_filter(nih_root):
    src = load_nih_source(nih_root, finding="Emphysema", views=["PA"], age_bins=[40])
    index = src.index
    assert index["image_id"].tolist() == ["00000001_000", "00000001_001", "00000003_000"]
    assert src.table_rows == [0, 1, 3]
    assert index["label"].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"data\.finding = 'Emphysem'.*Cardiomegaly, "
                                         r"Emphysema, Hernia, No Finding"):
        load_nih_source(nih_root, finding="Emphysem", views=[], age_bins=[40])


def test_nih_table_without_a_needed_column_is_named(nih_root):
    table = nih_root / "Data_Entry_2017.csv"
    table.write_text(table.read_text().replace("View Position", "View"))
    with pytest.raises(ValueError, match=r"Data_Entry_2017\.csv: column\(s\) \['View Position'\] "
                                         r"not found; .*expected the NIH Data_Entry_2017 columns"):
        load_nih_source(nih_root, finding="any", views=[], age_bins=[40])


def test_nih_table_not_in_utf8_is_one_error_naming_the_file(nih_root):
    table = nih_root / "Data_Entry_2017.csv"
    text = table.read_text().replace("Hernia", "Hernie \u00e9")
    table.unlink()
    with gzip.open(nih_root / "Data_Entry_2017.csv.gz", "wb") as file:
        file.write(text.encode("latin-1"))
    offset = text.index("\u00e9")
    with pytest.raises(ValueError, match=(
            rf"Data_Entry_2017\.csv\.gz: not UTF-8 text \(byte 0xe9 at offset {offset}, "
            r"line 5\); save it as UTF-8")):
        load_nih_source(nih_root, finding="any", views=[], age_bins=[40])


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
    src = load_nih_source(tmp_path, finding="Cardiomegaly", views=[], age_bins=[40, 60, 80])
    index, paths, rejected = src.index, src.paths, src.rejected
    _check_contract(index, paths, tmp_path)
    assert Path(paths[0]).name == names[0] and index["image_id"].tolist()[0] == "00000001_000"
    assert index["label"].tolist()[:2] == [1, 1]  # 00000001_000/001 show Cardiomegaly
    assert len(index) == 5 and len(rejected) == 112_120 - 5
    assert (rejected["reason"] == "missing file").all()
