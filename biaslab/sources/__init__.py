"""Image sources: each yields the same thing, an index table and the images to prepare.

The index has the columns of DESIGN.md (``image_id``, ``label``, ``patient_id``, ``source`` plus
metadata attributes); ``prepare`` adds ``row`` once the pixels are stored. ``digits`` carries its
images in memory; the file sources (``nih``, ``folder``, ``imagefolder``, ``csv``) carry the
absolute path of each image, checked to lie under the data root. Rows that cannot be used
(a path outside the root, a missing file, an unparseable label) go to ``rejected``; metadata
values that cannot be normalised go to ``issues``, row by row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from biaslab.metadata import empty_issues
from biaslab.sources._files import empty_rejected
from biaslab.sources.digits import load_digits_source
from biaslab.sources.folders import load_folder_source, load_imagefolder_source
from biaslab.sources.nih import load_nih_source
from biaslab.sources.table import load_csv_source

__all__ = [
    "Source", "load_source", "load_digits_source", "load_nih_source", "load_folder_source",
    "load_imagefolder_source", "load_csv_source",
]


@dataclass
class Source:
    """What a source yields.

    Attributes
    ----------
    index : DataFrame
        One row per usable image (no ``row`` column yet).
    images : ndarray of uint8 (N, h, w), or None
        In-memory images (digits).
    paths : list of str, or None
        Absolute image paths aligned with ``index`` (file sources).
    rejected : DataFrame
        ``path`` (relative to the data root), ``reason``.
    issues : DataFrame
        ``table_row``, ``column``, ``value``, ``reason`` of metadata left missing.
    """

    index: pd.DataFrame
    images: np.ndarray | None = None
    paths: list[str] | None = None
    rejected: pd.DataFrame = field(default_factory=empty_rejected)
    issues: pd.DataFrame = field(default_factory=empty_issues)


def load_source(cfg, root: Path | None) -> Source:
    """Dispatch to the loader of ``cfg.source`` (a validated :class:`DataConfig`).

    ``root`` is the resolved data folder (ignored by ``digits``).
    """
    if cfg.source == "digits":
        index, images = load_digits_source(cfg.negative, cfg.positive)
        return Source(index=index, images=images)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: {root} is not a folder (source {cfg.source})")
    bins = list(cfg.age_bins)
    if cfg.source == "nih":
        parts = load_nih_source(root, finding=cfg.finding, views=cfg.views, age_bins=bins)
    elif cfg.source == "folder":
        parts = load_folder_source(
            root, positive_folder=cfg.positive_folder, table=cfg.table,
            path_column=cfg.path_column, columns=_columns(cfg), age_bins=bins)
    elif cfg.source == "imagefolder":
        parts = load_imagefolder_source(
            root, positive_class=cfg.positive_class, negative_class=cfg.negative_class)
    else:
        parts = load_csv_source(
            root, table=cfg.table, path_column=cfg.path_column, label_column=cfg.label_column,
            columns=_columns(cfg), views=cfg.views, age_bins=bins)
    index, paths, rejected, issues = parts
    return Source(index=index, paths=paths, rejected=rejected, issues=issues)


def _columns(cfg) -> dict:
    return {"patient": cfg.patient_column, "sex": cfg.sex_column, "age": cfg.age_column,
            "attributes": list(cfg.attributes)}
