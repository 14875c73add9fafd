"""Shared fixtures: tiny data that every test can build in milliseconds."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)  # dvc and python of this environment
SHARED = ROOT.parent / "shared"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny_index():
    """40 images, balanced labels, with a row column like the index artifact."""
    n = 40
    return pd.DataFrame({
        "row": np.arange(n),
        "image_id": [f"img-{i}" for i in range(n)],
        "label": np.tile([0, 1], n // 2).astype(np.int8),
        "patient_id": pd.Series([None] * n, dtype="string"),
    })
