"""Reading the report's per-scheme inputs from the folders the stage is given.

Two layouts are read: one file per scheme (``FOLDER/SCHEME.parquet``,
``FOLDER/SCHEME/curves.csv``) and one per scheme and training seed
(``FOLDER/SCHEME/seedK.parquet``, ``FOLDER/SCHEME/seedK/curves.csv``); the second adds a
``seed`` column. Only the schemes (and seeds) asked for are read, so a stale file of a removed
one is ignored. A missing file is an error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from biaslab import io
from biaslab.report import ExplainFigure, ExplainTable

MANIFEST = "manifest.json"


def _files(folder: Path, scheme: str, single: str, seeded: str,
           seeds: Sequence[int] | None) -> list[tuple[int | None, Path]]:
    """(seed, path) of the scheme's files: ``seeded`` (a path template of ``scheme`` and
    ``seed``) for the ``seeds`` asked when they all exist, else ``single`` (of ``scheme``) when
    it exists, else every seed found (``seeds`` None) or asked."""
    path = folder / single.format(scheme=scheme)
    if seeds is not None:
        asked = [(k, folder / seeded.format(scheme=scheme, seed=k)) for k in seeds]
        return asked if all(p.exists() for _, p in asked) or not path.exists() else [
            (None, path)]
    if path.exists():
        return [(None, path)]
    pattern = re.compile(re.escape(seeded.format(scheme=scheme, seed="@")).replace("@", r"(\d+)"))
    found = sorted((int(m[1]), p) for p in folder.glob(seeded.format(scheme=scheme, seed="*"))
                   if (m := pattern.fullmatch(p.relative_to(folder).as_posix())))
    if not found:
        raise FileNotFoundError(f"{path}: missing, and no "
                                f"{folder / seeded.format(scheme=scheme, seed='K')}; run the "
                                "stage that writes it (dvc repro)")
    return found


def per_scheme(folder: str | Path, schemes: Sequence[str], single: str = "{scheme}.parquet",
               seeded: str = "{scheme}/seed{seed}.parquet", seeds: Sequence[int] | None = None,
               read: Callable[[Path], pd.DataFrame] = io.read_table) -> dict[str, pd.DataFrame]:
    """scheme -> its table (the seeds' tables stacked, with a ``seed`` column)."""
    out = {}
    for scheme in schemes:
        parts = []
        for seed, path in _files(Path(folder), scheme, single, seeded, seeds):
            table = read(path)
            parts.append(table if seed is None else table.assign(seed=seed))
        out[scheme] = pd.concat(parts, ignore_index=True)
    return out


def curves(folder: str | Path, schemes: Sequence[str],
           seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """Training curves of every scheme (and seed): ``scheme``, ``seed``, the curves' columns."""
    def read_csv(path: Path) -> pd.DataFrame:
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; run the train stage (dvc repro)")
        return pd.read_csv(path)

    tables = per_scheme(folder, schemes, "{scheme}/curves.csv", "{scheme}/seed{seed}/curves.csv",
                        seeds, read_csv)
    return pd.concat([t.assign(scheme=s) for s, t in tables.items()], ignore_index=True)


def explain(folder: str | Path | None,
            schemes: Sequence[str] = ()) -> list[ExplainFigure | ExplainTable]:
    """The explain stage's figures and tables: ``FOLDER/manifest.json`` and each
    ``FOLDER/SCHEME/manifest.json``, whichever exist (none, or no folder: an empty list).

    A manifest reads ``{"items": [{"kind": "figure", "title": ..., "caption": ...,
    "file": "occlusion.png"}, {"kind": "table", "title": ..., "file": "share.csv"}]}``, files
    relative to the manifest's folder; a scheme's titles are prefixed with the scheme.
    """
    if folder is None or not Path(folder).is_dir():
        return []
    items: list[ExplainFigure | ExplainTable] = []
    for where, prefix in [(Path(folder), ""), *[(Path(folder) / s, f"{s}: ") for s in schemes]]:
        manifest = where / MANIFEST
        if manifest.is_file():
            items += _manifest_items(manifest, prefix)
    return items


def _manifest_items(manifest: Path, prefix: str) -> list[ExplainFigure | ExplainTable]:
    content = io.read_json(manifest)
    entries = content.get("items") if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{manifest}: expected {{\"items\": [...]}}, got {str(content)[:80]}")
    items = []
    for i, entry in enumerate(entries):
        kind, file = (entry.get(k) if isinstance(entry, dict) else None for k in ("kind", "file"))
        if kind not in ("figure", "table") or not isinstance(file, str):
            raise ValueError(f"{manifest}: items[{i}] = {str(entry)[:80]}; expected a mapping "
                             "with kind (figure or table), file, title and optional caption")
        path = manifest.parent / file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (listed in {manifest}); rerun explain "
                                    "(dvc repro)")
        title = prefix + str(entry.get("title", file))
        caption = str(entry.get("caption", ""))
        items.append(ExplainFigure(title, path.read_bytes(), caption) if kind == "figure"
                     else ExplainTable(title, pd.read_csv(path), caption))
    return items
