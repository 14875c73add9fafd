"""Sources laid out as folders: ``folder`` (per-split class folders such as
``train/{malade,sain}``, optional ``metadata.csv``) and ``imagefolder`` (ImageNet-style
``class_name/*.JPEG``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from biaslab.metadata import empty_issues
from biaslab.sources._files import finish_index, list_images, rejected_frame, resolve_under
from biaslab.sources.table import check_columns, metadata_columns, read_table

# folder names of the splits a source may ship, mapped to ours
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_files(root: Path, folder: Path) -> pd.DataFrame:
    """One row per image under each class sub-folder of ``folder``: ``class_name``, ``source``."""
    rows = [(cls.name, rel) for cls in _subfolders(folder) for rel in list_images(cls, root)]
    return pd.DataFrame(rows, columns=["class_name", "source"])


def _checked(root: Path, files: pd.DataFrame):
    """Keep files that resolve under ``root`` (a symlink out is rejected)."""
    paths, reasons = resolve_under(root, files["source"])
    bad = reasons.notna()
    return files[~bad], paths[~bad].tolist(), rejected_frame(files.loc[bad, "source"],
                                                             reasons[bad])


def load_folder_source(
    root: Path, *, positive_folder: str, table: str, path_column: str, columns: dict,
    age_bins: list[float],
):
    """Index + paths of ``root/[split/]class/*``; the class folder ``positive_folder`` is 1.

    Split folders (``train``, ``valid``, ``test``, ...) give the ``source_split`` column
    (train/val/test). An optional table ``root/table`` (e.g. ``metadata.csv``) is joined on
    the file name (its ``path_column`` may hold a name or a path) for patient, sex, age and
    more attributes.
    """
    if (root / positive_folder).is_dir():
        files, splits = _class_files(root, root), None
    else:
        parts = []
        for folder in _subfolders(root):
            if folder.name.lower() not in SPLIT_FOLDERS:
                raise ValueError(f"data.root: folder {folder} is neither a split folder "
                                 f"({', '.join(SPLIT_FOLDERS)}) nor data.positive_folder = "
                                 f"{positive_folder!r}")
            part = _class_files(root, folder)
            parts.append(part.assign(source_split=SPLIT_FOLDERS[folder.name.lower()]))
        files, splits = pd.concat(parts, ignore_index=True), True
    if not (files["class_name"] == positive_folder).any():
        raise ValueError(f"data.positive_folder = {positive_folder!r}: no image in such a "
                         f"folder under {root}; class folders: {sorted(set(files['class_name']))}")
    files, paths, rejected = _checked(root, files)
    index = pd.DataFrame({
        "image_id": files["source"].str.replace(r"^.*[\\/]|\.[^.]+$", "", regex=True),
        "label": (files["class_name"] == positive_folder).astype(int),
        "source": files["source"],
    }, index=files.index)
    if splits:
        index["source_split"] = files["source_split"]
    index, issues = _join_metadata(index, root / table, path_column, columns, age_bins)
    return finish_index(index), paths, rejected, issues


def _join_metadata(index, path: Path, path_column: str, columns: dict, age_bins):
    """Attach normalised metadata from the table at ``path`` (if any) by file name."""
    if not path.is_file():
        index["patient_id"] = pd.Series(pd.NA, index=index.index, dtype="string")
        return index, empty_issues()
    table = read_table(path)
    check_columns(table, path, {"path_column": path_column})
    meta, issues = metadata_columns(table, columns, age_bins)
    meta.index = table[path_column].str.replace(r"^.*[\\/]", "", regex=True)
    meta = meta[~meta.index.duplicated()]
    names = index["source"].str.replace(r"^.*[\\/]", "", regex=True)
    joined = meta.reindex(names.to_numpy()).set_axis(index.index)
    return pd.concat([index, joined], axis=1), issues


def load_imagefolder_source(root: Path, *, positive_class: str, negative_class: str):
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
    return finish_index(index), paths, rejected, empty_issues()
