"""Sources laid out as folders: ``folder`` (per-split class folders such as
``train/{malade,sain}``, optional ``metadata.csv``) and ``imagefolder`` (ImageNet-style
``class_name/*.JPEG``)."""

from __future__ import annotations

import posixpath
from pathlib import Path

import numpy as np
import pandas as pd

from biaslab.data.columns import require_columns
from biaslab.data.findings import any_finding, finding_labels, label_columns
from biaslab.data.metadata import empty_issues
from biaslab.data.sources._files import (
    Source,
    finish_index,
    list_images,
    rejected_frame,
    resolve_under,
)
from biaslab.data.sources.csv_table import PATH_HINT, metadata_columns, read_csv_table
from biaslab.data.split_names import SOURCE_SPLITS


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_files(root: Path, folder: Path) -> pd.DataFrame:
    """One row per image under each class sub-folder of ``folder``: ``class_name``, ``source``."""
    rows = [(cls.name, rel) for cls in _subfolders(folder) for rel in list_images(cls, root)]
    return pd.DataFrame(rows, columns=["class_name", "source"])


def _checked(root: Path, files: pd.DataFrame, table_rows: pd.Series | None = None):
    """Keep files that resolve under ``root`` (a symlink out is rejected)."""
    paths, reasons = resolve_under(root, files["source"])
    bad = reasons.notna()
    rows = None if table_rows is None else table_rows[bad]
    return files[~bad], paths[~bad].tolist(), rejected_frame(files.loc[bad, "source"],
                                                             reasons[bad], rows)


def load_folder_source(
    root: Path, *, positive_folder: str, table: str, path_column: str, columns: dict,
    age_bins: list[float], findings: list[str] = (),
) -> Source:
    """Index + paths of ``root/[split/]class/*``; the class folder ``positive_folder`` is 1.

    Split folders (``train``, ``valid``, ``test``, ...) give the ``source_split`` column
    (train/val/test). An optional table ``root/table`` (e.g. ``metadata.csv``) gives patient,
    sex, age and more attributes: its ``path_column`` holds the image's path relative to
    ``root`` (``train/malade/x0.png``) or, when no other image has it, its base name
    (``x0.png``); see :func:`_metadata`. With a table, ``table_rows`` holds the row describing
    each image (None for an image it does not describe).

    ``findings`` (``data.findings``): several findings, 0/1 columns of the table
    (:func:`~biaslab.data.findings.finding_labels`), which must then exist and describe every
    image; ``label`` is then any of them (the class folders only list the images).
    """
    if (root / positive_folder).is_dir():
        files, splits = _class_files(root, root), None
    else:
        parts = []
        for folder in _subfolders(root):
            if folder.name.lower() not in SOURCE_SPLITS:
                raise ValueError(f"data.root: folder {folder} is neither a split folder "
                                 f"({', '.join(SOURCE_SPLITS)}) nor data.positive_folder = "
                                 f"{positive_folder!r}")
            part = _class_files(root, folder)
            parts.append(part.assign(source_split=SOURCE_SPLITS[folder.name.lower()]))
        files, splits = pd.concat(parts, ignore_index=True), True
    if not (files["class_name"] == positive_folder).any():
        raise ValueError(f"data.positive_folder = {positive_folder!r}: no image in such a "
                         f"folder under {root}; class folders: {sorted(set(files['class_name']))}")
    meta, issues = _metadata(root / table, path_column, columns, age_bins, files["source"],
                             list(findings))
    table_rows = None if meta is None else meta.pop("table_row")
    files, paths, rejected = _checked(root, files, table_rows)
    index = pd.DataFrame({
        "image_id": files["source"].str.replace(r"^.*[\\/]|\.[^.]+$", "", regex=True),
        "label": (files["class_name"] == positive_folder).astype(int),
        "source": files["source"],
    }, index=files.index)
    if splits:
        index["source_split"] = files["source_split"]
    if meta is None:
        index["patient_id"] = pd.Series(pd.NA, index=index.index, dtype="string")
    else:
        index = pd.concat([index, meta.loc[files.index]], axis=1)
        table_rows = [None if pd.isna(r) else int(r) for r in table_rows[files.index]]
    if findings:
        index = _finding_labels(index, list(findings), root / table)
    return Source(index=finish_index(index), paths=paths, rejected=rejected, issues=issues,
                  table_rows=table_rows)


def _finding_labels(index: pd.DataFrame, findings: list[str], path: Path) -> pd.DataFrame:
    """``index`` with ``label`` = any finding; an image the table does not describe is an
    error (its findings are unknown, and 0 would be a guess)."""
    columns = label_columns(findings)
    if not set(columns) <= set(index.columns):
        raise ValueError(f"data.findings: the folder source reads the findings from its table "
                         f"data.table, and there is none at {path}")
    unknown = index[index[columns].isna().any(axis=1)]
    if len(unknown):
        raise ValueError(f"{path}: no row describes image {unknown['source'].iloc[0]} "
                         f"({len(unknown)} image(s) without findings); with data.findings "
                         "every image needs its row")
    labels = index[columns].astype(np.int8)
    return index.assign(label=any_finding(labels), **labels)


def _posix(paths: pd.Series) -> pd.Series:
    """Paths as the image listing spells them: ``/`` separators, no ``./``."""
    text = paths.astype("string").fillna("").str.strip().str.replace("\\", "/", regex=False)
    return text.map(lambda p: posixpath.normpath(p) if p else p).astype(object)


def _image_of_row(keys: pd.Series, sources: pd.Series, path: Path) -> pd.Series:
    """The image (its path under the root) each table row describes, NaN for none.

    A key with a ``/`` is a path relative to the root; one without is a base name, accepted
    only when a single image has it: train/x0.png and test/x0.png are two images, and
    joining either on ``x0.png`` would give both the metadata of one.
    """
    names = sources.str.rsplit("/", n=1).str[-1]
    images_of_name = sources.groupby(names.to_numpy()).agg(list)
    is_name = ~keys.str.contains("/", regex=False)
    ambiguous = [n for n in dict.fromkeys(keys[is_name])
                 if len(images_of_name.get(n, [])) > 1]
    if ambiguous:
        name = ambiguous[0]
        files = images_of_name[name]
        more = f" (and {len(ambiguous) - 1} more ambiguous name(s))" if len(ambiguous) > 1 else ""
        raise ValueError(f"{path}: base name {name} matches {len(files)} images "
                         f"({', '.join(files[:5])}){more}; give paths relative to data.root")
    by_name = images_of_name.map(lambda files: files[0])
    return keys.where(keys.isin(set(sources)), np.nan).where(~is_name, keys.map(by_name))


def _metadata(path: Path, path_column: str, columns: dict, age_bins, listed: pd.Series,
              findings: list[str] = ()):
    """Normalised metadata of each ``listed`` image from the table at ``path``, if any.

    Returns
    -------
    meta : DataFrame aligned with ``listed`` (NA for an image no row describes), with the
        ``table_row`` describing each image (Int64); None when there is no table.
    issues : DataFrame of unparseable values

    With ``findings``, ``meta`` also holds their ``label_F`` columns. Table rows that name no
    image are ignored, unless none does (an error: the paths are
    likely relative to another folder); an image described by two rows is an error too.
    """
    if not path.is_file():
        return None, empty_issues()
    table = read_csv_table(path)
    require_columns(table, [path_column], what=f"{path} (data.path_column)",
                    hint=PATH_HINT)
    require_columns(table, columns["attributes"], what=f"{path} (data.attributes)")
    meta, issues = metadata_columns(table, columns, age_bins)
    if findings:  # label_F of each row (an error naming the row when one is not 0/1)
        meta = pd.concat([meta, finding_labels(table, list(findings), where=str(path))], axis=1)
    sources = _posix(listed)
    image = _image_of_row(_posix(table[path_column]), sources, path)
    if len(table) and image.isna().all():  # e.g. paths relative to another folder
        raise ValueError(f"{path}: no row names an image under data.root (first: "
                         f"{table[path_column].iloc[0]!r}); data.path_column = {path_column!r} "
                         "must hold paths relative to data.root or base names")
    _refuse_rows_of_one_image(image, table[path_column], path)
    meta = meta.assign(table_row=pd.array(table.index, dtype="Int64"))
    meta = meta[image.notna().to_numpy()].set_axis(image.dropna().to_numpy())
    return meta.reindex(sources.to_numpy()).set_axis(listed.index), issues


def _refuse_rows_of_one_image(image: pd.Series, spelt: pd.Series, path: Path) -> None:
    """Two rows describing one image is an error: which metadata is right cannot be guessed."""
    twice = image[image.notna() & image.duplicated(keep=False)]
    if not len(twice):
        return
    first = twice.iloc[0]
    rows = twice.index[twice == first].tolist()
    names = " and ".join(repr(spelt[r]) for r in rows[:2])
    extra = f" (and row(s) {rows[2:]})" if len(rows) > 2 else ""
    more = (f"; {twice.nunique() - 1} more image(s) are described twice"
            if twice.nunique() > 1 else "")
    raise ValueError(f"{path}: table rows {rows[0]} and {rows[1]}{extra} both describe image "
                     f"{first} (as {names}; rows count from 0 after the header){more}; keep "
                     "one row per image")


def load_imagefolder_source(root: Path, *, positive_class: str, negative_class: str) -> Source:
    """Index + paths of ImageNet-style ``root/class_name/*``.

    ``positive_class`` is labelled 1; ``negative_class`` 0, or every other class when it is
    ``"rest"`` (one-vs-rest). Other classes are left out (not rejected: not part of the task).
    """
    files = _class_files(root, root)
    known = sorted(set(files["class_name"]))
    for key, name in (("positive_class", positive_class), ("negative_class", negative_class)):
        if name not in known and not (key == "negative_class" and name == "rest"):
            raise ValueError(f"data.{key} = {name!r}: no such class folder with images under "
                             f"{root}; classes: {', '.join(known)}")
    if negative_class != "rest":
        files = files[files["class_name"].isin([positive_class, negative_class])]
    files, paths, rejected = _checked(root, files)
    index = pd.DataFrame({
        "image_id": files["source"].str.replace(r"\.[^.]+$", "", regex=True),
        "label": (files["class_name"] == positive_class).astype(int),
        "patient_id": pd.Series(pd.NA, index=files.index, dtype="string"),
        "source": files["source"], "class_name": files["class_name"],
    })
    return Source(index=finish_index(index), paths=paths, rejected=rejected)
