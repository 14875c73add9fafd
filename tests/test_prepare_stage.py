"""stages.prepare on generated files (csv source) and on the real X-rays: contiguous rows,
rejects listed, and a failed run leaves no artifact. Each runs the stage in a subprocess (slow)."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from biaslab.data.images import decode_file
from tests.conftest import ROOT, SHARED

pytestmark = pytest.mark.slow

CXR = SHARED / "data" / "cxr_sample"
OUTS = ("pixels.npy", "index.parquet", "rejected.csv", "issues.csv")


def _run(workdir, data, prepare):
    (workdir / "params.yaml").write_text(yaml.safe_dump({"data": data, "prepare": prepare}))
    args = [f"--{name.split('.')[0]}={workdir / 'out' / name}" for name in OUTS]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "stages.prepare", *args], cwd=workdir,
                          env=env, capture_output=True, text=True)


@pytest.fixture
def csv_data(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    rows = []
    for i in range(8):
        Image.new("RGB", (30 + i, 20), (20 * i, 10, 200)).save(root / f"{i}.png")
        rows.append((f"{i}.png", i % 2, f"p{i // 2}", "MF"[i % 2], str(30 + i)))
    (root / "5.png").write_bytes(b"")  # empty: rejected at decoding
    rows.append(("../escape.png", 1, "p9", "F", "40"))  # rejected by the source
    pd.DataFrame(rows, columns=["path", "label", "patient_id", "sex", "age"]).to_csv(
        root / "metadata.csv", index=False)
    return tmp_path, root


def test_prepare_stage_csv_rows_stay_contiguous(csv_data):
    workdir, root = csv_data
    proc = _run(workdir, {"source": "csv", "root": "images"},
                {"size": 16, "max_rejected_fraction": 0.3, "workers": 2})
    assert proc.returncode == 0, proc.stderr
    assert "7 images (csv) at 16x16" in proc.stdout and "2 rejected" in proc.stdout
    out = workdir / "out"
    index = pd.read_parquet(out / "index.parquet")
    pixels = np.load(out / "pixels.npy", mmap_mode="r")
    assert index["row"].tolist() == list(range(7)) and pixels.shape == (7, 16, 16)
    assert "5.png" not in set(index["source"])
    for row, source in zip(index["row"], index["source"], strict=True):
        np.testing.assert_array_equal(pixels[row], decode_file(str(root / source), 16))
    rejected = pd.read_csv(out / "rejected.csv")
    assert sorted(rejected["path"]) == ["../escape.png", "5.png"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left


def test_prepare_stage_fails_cleanly_above_the_rejected_fraction(csv_data):
    workdir, _ = csv_data
    proc = _run(workdir, {"source": "csv", "root": "images"}, {"size": 16,
                                                              "max_rejected_fraction": 0.1})
    assert proc.returncode == 1
    assert "prepare: error: 2 of 9 images rejected (22.2%), more than " \
           "prepare.max_rejected_fraction = 0.1" in proc.stderr
    assert not (workdir / "out").exists() or not list((workdir / "out").iterdir())


@pytest.mark.skipif(not CXR.exists(), reason=f"real X-ray sample not available at {CXR}")
def test_prepare_stage_on_the_real_xrays(tmp_path):
    proc = _run(tmp_path, {"source": "csv", "root": str(CXR), "attributes": ["view"]},
                {"size": 32})
    assert proc.returncode == 0, proc.stderr
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    assert len(index) == 137 and index["patient_id"].nunique() == 73
    assert index["sex"].value_counts().to_dict() == {"M": 83, "F": 54}
    assert np.load(tmp_path / "out" / "pixels.npy").shape == (137, 32, 32)
