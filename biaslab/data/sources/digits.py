"""The embedded default source: scikit-learn's bundled handwritten digits (no download)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def load_digits_source(
    negative: list[int], positive: list[int]
) -> tuple[pd.DataFrame, np.ndarray]:
    """scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, no download), binary.

    Parameters
    ----------
    negative, positive : list of int
        Digits labelled 0 and 1. Other digits are left out (they are not part of the task, so
        they are not "rejected" images).

    Returns
    -------
    index : DataFrame
        ``image_id``, ``label`` (0/1), ``patient_id`` (all null: one image per writer sample),
        ``source`` (``digits/<position in the scikit-learn set>``) and ``digit``.
    images : ndarray of uint8, shape (N, 8, 8)
        Gray levels rescaled from scikit-learn's 0..16 to 0..255.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = np.isin(bunch.target, negative + positive)
    positions = np.flatnonzero(keep)
    digits = bunch.target[keep]
    images = np.rint(bunch.images[keep] * (255.0 / 16.0)).astype(np.uint8)
    index = pd.DataFrame(
        {
            "image_id": [f"digit-{p:04d}" for p in positions],
            "label": np.isin(digits, positive).astype(np.int8),
            "patient_id": pd.Series([None] * len(positions), dtype="string"),
            "source": [f"digits/{p}" for p in positions],
            "digit": digits.astype(np.int8),
        }
    )
    return index, images
