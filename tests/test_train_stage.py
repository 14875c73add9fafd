"""The train stage end to end on tiny artifacts: a stale checkpoint, and the degenerate flag."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from biaslab.data.bias import draw_s
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # each run starts a Python with torch: seconds
N = 60


@pytest.fixture
def repo(tmp_path):
    """The train stage's inputs for 60 8x8 images (40 train, 20 val) and 3 epochs."""
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], N // 2).astype(np.int8)
    np.save(tmp_path / "pixels.npy", rng.integers(0, 256, (N, 8, 8), dtype=np.uint8))
    rows = np.arange(N)
    pd.DataFrame({"row": rows, "label": labels}).to_parquet(tmp_path / "index.parquet")
    _write_bias(tmp_path, draw_s(labels, 0.1, 0.9, seed=0))
    pd.DataFrame({"row": rows, "split": ["train"] * 40 + ["val"] * 20}).to_parquet(
        tmp_path / "split.parquet")
    pd.DataFrame({"row": rows, "weight": 1.0, "mode": "loss"}).to_parquet(
        tmp_path / "weights.parquet")
    (tmp_path / "params.yaml").write_text("train: {epochs: 3, width: 4, batch_size: 8}\n")
    return tmp_path


def _write_bias(repo, s):
    table = pd.DataFrame({"row": np.arange(N)})
    if s is not None:
        table["s"] = s
    table.to_parquet(repo / "bias.parquet")


def _stage(repo):
    args = [f"--{name}={repo / f'{name}.parquet'}" for name in ("index", "bias", "split",
                                                                 "weights")]
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train", "--scheme", "x", "--seed", "0",
         f"--pixels={repo / 'pixels.npy'}",
         *args, f"--model={repo / 'models/model.pt'}", f"--curves={repo / 'curves.csv'}"],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE,
        text=True)


def _kill_after_epoch_1(repo):
    proc = _stage(repo)
    for line in proc.stderr:
        if line.startswith("epoch 1/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and (repo / "models/resume.pt").is_file()


def _finish(repo) -> str:
    proc = _stage(repo)
    log = proc.stderr.read()
    assert proc.wait() == 0, log
    assert not (repo / "models/resume.pt").exists()  # removed once the model is saved
    return log


def test_checkpoint_is_resumed_only_by_a_run_of_the_same_inputs(repo):
    _kill_after_epoch_1(repo)
    _write_bias(repo, draw_s(np.tile([0, 1], N // 2), 0.2, 0.9, seed=0))  # bias.p0 changed
    log = _finish(repo)
    assert "was made from other inputs/params/code: starting afresh" in log
    assert "resuming" not in log and "epoch 1/3" in log
    _kill_after_epoch_1(repo)
    log = _finish(repo)
    assert f"resuming from {repo / 'models/resume.pt'} after epoch 1" in log
    assert "epoch 1/3" not in log and "epoch 3/3" in log


def test_a_model_that_learnt_nothing_is_flagged_for_evaluate(repo):
    np.save(repo / "pixels.npy", np.zeros((N, 8, 8), dtype=np.uint8))  # nothing to learn from
    _write_bias(repo, None)  # bias.kind: none
    (repo / "params.yaml").write_text("train: {epochs: 3, width: 4, batch_size: 8}\n"
                                      "bias: {kind: none}\n")
    log = _finish(repo)
    assert "train@x-0: warning: validation scores are nearly constant" in log
    health = json.loads((repo / "models/health.json").read_text())
    assert health["scheme"] == "x" and health["degenerate"].startswith("validation scores")
    # 3 epochs: too few for the stability figure (the second half of at least 4), no warning
    assert health["val_bacc_swing"] is None and health["unstable"] is None
