"""Several findings (data.findings): the config, the sources' label columns and their errors,
on generated tables and images."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biaslab.config import ConfigError, parse_params
from biaslab.data.findings import NIH_FINDINGS, any_finding, finding_labels, findings_of
from biaslab.data.sources import load_csv_source, load_folder_source, load_nih_source
from tests.test_sources import NIH_HEADER

COLUMNS = {"patient": "pid", "sex": "sex", "age": "age", "attributes": []}


def _image(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (16, 16), value).save(path)


# ---------------------------------------------------------------- config
def test_findings_all_is_the_14_nih_findings_in_the_nih_order():
    data = parse_params({"data": {"source": "nih", "root": "x", "findings": "all"}}).data
    assert data.findings == list(NIH_FINDINGS) and len(data.findings) == 14
    assert data.findings[0] == "Atelectasis" and data.findings[-1] == "Hernia"


@pytest.mark.parametrize("data, said", [
    ({"source": "nih", "findings": ["Cardiomegaly", "Hernai"]},
     r"data.findings = \['Hernai'\] is not allowed; expected findings among Atelectasis, "
     r"Cardiomegaly.*Hernia \(or all\)"),
    ({"source": "csv", "findings": "all"}, r"data.findings = 'all'.*or all, with data.source: nih"),
    ({"source": "nih", "findings": ["Edema"], "finding": "Edema"},
     r"data.finding = 'Edema'.*one label, or several, not both"),
    ({"source": "csv", "findings": ["a", "a"]}, r"distinct"),
    ({"source": "imagefolder", "positive_class": "x", "findings": ["a"]},
     r"\[\] with data.source: imagefolder"),
    ({"source": "csv", "findings": ["a"], "attributes": ["label_site"]},
     r"data.attributes = \['label_site'\]"),
    ({"source": "csv", "attributes": ["view", "label_covid"]},
     r"data.attributes = \['label_covid'\] is not allowed; expected attributes not named "
     r"label_\.\.\."),
])
def test_bad_findings_are_one_line_naming_the_key(data, said):
    with pytest.raises(ConfigError, match=said) as err:
        parse_params({"data": {"root": "x", **data}})
    assert "\n" not in str(err.value)


def test_pos_weight_takes_none_balanced_or_a_positive_mapping():
    assert parse_params({"train": {"pos_weight": {"Hernia": 50}}}).train.pos_weight == {
        "Hernia": 50.0}
    for bad in ({}, {"Hernia": 0}, "rare", 2):
        with pytest.raises(ConfigError, match="expected none, balanced, or a mapping"):
            parse_params({"train": {"pos_weight": bad}})


# ---------------------------------------------------------------- csv
@pytest.fixture
def csv_root(tmp_path):
    root = tmp_path / "data"
    for name in "abcd":
        _image(root / f"{name}.png")
    pd.DataFrame({"path": ["a.png", "b.png", "c.png", "d.png"], "pid": ["1", "2", "3", "4"],
                  "Edema": ["1", "0", "0", "yes"], "Mass": ["0", "0", "1", "false"],
                  "Hernia": ["0", "0", "0", "1"], "view": ["PA", "PA", "AP", "PA"]}
                 ).to_csv(root / "t.csv", index=False)
    return root


def _csv(root, **kw):
    args = {"table": "t.csv", "path_column": "path", "label_column": "label",
            "columns": COLUMNS, "views": [], "age_bins": [40]} | kw
    return load_csv_source(root, **args)


def test_csv_findings_become_label_columns_and_label_any_finding(csv_root):
    src = _csv(csv_root, findings=["Mass", "Edema", "Hernia"])
    index = src.index
    assert [c for c in index.columns if c.startswith("label")] == [
        "label", "label_Mass", "label_Edema", "label_Hernia"]
    assert findings_of(index) == ["Mass", "Edema", "Hernia"]
    assert index["label_Mass"].tolist() == [0, 0, 1, 0]
    assert index["label_Edema"].tolist() == [1, 0, 0, 1]
    assert index["label"].tolist() == [1, 0, 1, 1]  # any of the three
    assert all(index[c].dtype == np.int8 for c in ("label", "label_Mass", "label_Hernia"))
    # the rows of another view are not read
    assert _csv(csv_root, findings=["Mass"], views=["PA"]).index["label"].tolist() == [0, 0, 0]


def test_csv_without_findings_has_no_label_columns(csv_root):
    table = pd.read_csv(csv_root / "t.csv").assign(label=[0, 1, 0, 1])
    table.to_csv(csv_root / "t.csv", index=False)
    assert findings_of(_csv(csv_root).index) == []


def test_a_missing_finding_column_names_the_file_and_the_columns(csv_root):
    with pytest.raises(ValueError, match=r"t.csv \(data.findings\): column\(s\) \['Nodule'\] "
                                         r"not found; available: \['path'"):
        _csv(csv_root, findings=["Edema", "Nodule"])


@pytest.mark.parametrize("value", ["2", "", "maybe"])
def test_a_finding_not_0_1_names_the_file_row_and_column(csv_root, value):
    table = pd.read_csv(csv_root / "t.csv", dtype=str, keep_default_na=False)
    table.loc[2, "Mass"] = value
    table.to_csv(csv_root / "t.csv", index=False)
    with pytest.raises(ValueError, match=rf"t.csv: table row 2 \(counting from 0 after the "
                                         rf"header\), column 'Mass' = '{value}' is not a 0/1 "
                                         rf"label"):
        _csv(csv_root, findings=["Edema", "Mass"])


def test_any_finding_of_no_row_and_no_column():
    assert any_finding(pd.DataFrame({"label_a": [0, 1], "label_b": [0, 0]})).tolist() == [0, 1]
    labels = finding_labels(pd.DataFrame({"a": ["TRUE", " no "]}), ["a"], where="t")
    assert labels["label_a"].tolist() == [1, 0]


# ---------------------------------------------------------------- folder
def test_folder_source_reads_findings_from_its_table(tmp_path):
    for name, folder in (("x.png", "malade"), ("y.png", "sain"), ("z.png", "sain")):
        _image(tmp_path / folder / name)
    pd.DataFrame({"path": ["x.png", "y.png", "z.png"], "Edema": [1, 0, 0],
                  "Mass": [0, 0, 1]}).to_csv(tmp_path / "metadata.csv", index=False)
    args = {"positive_folder": "malade", "table": "metadata.csv", "path_column": "path",
            "columns": COLUMNS, "age_bins": [40]}
    index = load_folder_source(tmp_path, findings=["Edema", "Mass"], **args).index
    assert index.set_index("image_id")[["label", "label_Edema", "label_Mass"]].loc[
        ["x", "y", "z"]].values.tolist() == [[1, 1, 0], [0, 0, 0], [1, 0, 1]]
    pd.DataFrame({"path": ["x.png", "y.png"], "Edema": [1, 0], "Mass": [0, 0]}).to_csv(
        tmp_path / "metadata.csv", index=False)
    with pytest.raises(ValueError, match=r"no row describes image sain/z.png"):
        load_folder_source(tmp_path, findings=["Edema", "Mass"], **args)
    (tmp_path / "metadata.csv").unlink()
    with pytest.raises(ValueError, match=r"reads the findings from its table"):
        load_folder_source(tmp_path, findings=["Edema"], **args)


# ---------------------------------------------------------------- nih
def test_nih_findings_one_column_each_and_label_any_of_them(tmp_path):
    rows = [("1.png", "Cardiomegaly|Hernia", "PA"), ("2.png", "No Finding", "PA"),
            ("3.png", "Edema", "AP"), ("4.png", "Hernia", "PA")]
    lines = [NIH_HEADER] + [f"{f},{labels},0,{i},50,M,{view},2500,2048,0.1,0.1,\n"
                            for i, (f, labels, view) in enumerate(rows)]
    (tmp_path / "Data_Entry_2017.csv").write_text("".join(lines))
    for name, *_ in rows:
        _image(tmp_path / "images_001" / name)
    index = load_nih_source(tmp_path, finding="any", views=[], age_bins=[40],
                            findings=["Hernia", "Cardiomegaly"]).index
    assert findings_of(index) == ["Hernia", "Cardiomegaly"]
    assert index["label_Hernia"].tolist() == [1, 0, 0, 1]
    assert index["label_Cardiomegaly"].tolist() == [1, 0, 0, 0]
    assert index["label"].tolist() == [1, 0, 0, 1]  # Edema is not among the findings
    index = load_nih_source(tmp_path, finding="any", views=["PA"], age_bins=[40],
                            findings=list(NIH_FINDINGS)).index
    assert len(findings_of(index)) == 14 and index["label"].tolist() == [1, 0, 1]
