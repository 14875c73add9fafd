"""Reading the report's per-scheme inputs from the folders the stage is given.

One file per scheme and training seed (``FOLDER/SCHEME/seedK.parquet``,
``FOLDER/SCHEME/seedK/curves.csv``), stacked with a ``seed`` column. Only the schemes and seeds
asked for are read, so a stale file of a removed one is ignored. A missing file is an error
naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from biaslab import artifacts
from biaslab.report import ExplainFigure, ExplainTable

MANIFEST = "manifest.json"


def per_scheme(folder: str | Path, schemes: Sequence[str], seeds: Sequence[int],
               template: str = "{scheme}/seed{seed}.parquet",
               read: Callable[[Path], pd.DataFrame] = artifacts.read_table,
               ) -> dict[str, pd.DataFrame]:
    """scheme -> its seeds' tables (``template`` of ``scheme`` and ``seed`` under ``folder``)
    stacked, with a ``seed`` column."""
    out = {}
    for scheme in schemes:
        parts = []
        for seed in seeds:
            path = Path(folder) / template.format(scheme=scheme, seed=seed)
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing; run the stage that writes it "
                                        "(dvc repro)")
            parts.append(read(path).assign(seed=seed))
        out[scheme] = pd.concat(parts, ignore_index=True)
    return out


def curves(folder: str | Path, schemes: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """Training curves of every scheme and seed: ``scheme``, ``seed``, the curves' columns."""
    tables = per_scheme(folder, schemes, seeds, "{scheme}/seed{seed}/curves.csv", pd.read_csv)
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
    content = artifacts.read_json(manifest)
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
