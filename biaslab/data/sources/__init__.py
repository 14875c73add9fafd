"""Image sources: each yields the same thing, a :class:`Source`: an index table and the images
to prepare.

The index has the columns of DESIGN.md (``image_id``, ``label``, ``patient_id``, ``source`` plus
metadata attributes); ``prepare`` adds ``row`` once the pixels are stored. ``digits`` carries its
images in memory; the file sources (``nih``, ``folder``, ``imagefolder``, ``csv``) carry the
absolute path of each image, checked to lie under the data root. Rows that cannot be used
(a path outside the root, a missing file, an unparseable label) go to ``rejected``; metadata
values that cannot be normalised go to ``issues``, row by row. The sources read from a table
(``csv``, ``nih``, ``folder`` with its metadata table) give the table row of each image and
each rejected one, numbered as ``issues`` numbers them. Tables are read as UTF-8 text.
"""

from __future__ import annotations

from pathlib import Path

from biaslab.data.sources._files import Source
from biaslab.data.sources.csv_table import load_csv_source
from biaslab.data.sources.digits import load_digits_source
from biaslab.data.sources.folders import load_folder_source, load_imagefolder_source
from biaslab.data.sources.nih import load_nih_source

__all__ = [
    "Source", "load_source", "load_digits_source", "load_nih_source", "load_folder_source",
    "load_imagefolder_source", "load_csv_source",
]


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
        return load_nih_source(root, finding=cfg.finding, views=cfg.views, age_bins=bins,
                               findings=cfg.findings)
    if cfg.source == "folder":
        return load_folder_source(
            root, positive_folder=cfg.positive_folder, table=cfg.table,
            path_column=cfg.path_column, columns=_columns(cfg), age_bins=bins,
            findings=cfg.findings)
    if cfg.source == "imagefolder":
        return load_imagefolder_source(
            root, positive_class=cfg.positive_class, negative_class=cfg.negative_class)
    return load_csv_source(
        root, table=cfg.table, path_column=cfg.path_column, label_column=cfg.label_column,
        columns=_columns(cfg), views=cfg.views, age_bins=bins, findings=cfg.findings)


def _columns(cfg) -> dict:
    return {"patient": cfg.patient_column, "sex": cfg.sex_column, "age": cfg.age_column,
            "attributes": list(cfg.attributes)}
