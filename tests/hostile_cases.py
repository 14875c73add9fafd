"""The hostile inputs of issue 11, one small case each, generated at test time.

A case says how to build its input in an empty folder (images drawn with numpy and Pillow,
tables written as bytes, a params.yaml), which stage runs it (``python -m stages.NAME`` with the
arguments dvc.yaml gives it), and what must come out: a one-line error naming the file, row or
key (:class:`Error`), a listed rejection (:class:`Rejected`), a metadata issue
(:class:`Issue`), or artifacts that are right (:class:`Accepted`). tests/test_hostile.py runs
them; ``python -m tests.hostile_cases`` prints how many there are of each kind.

The folder is laid out as the repository: params.yaml, raw data under ``raw/`` (``data.root``),
the artifacts at the paths of dvc.yaml (``data/prepared/index.parquet``, ...).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

ROOT = "raw"  # data.root of every case, relative to the case's folder
TABLE = f"{ROOT}/metadata.csv"
SIZE = 8  # prepare.size: small images are enough to check what is kept


# ------------------------------------------------------------------------ expected outcomes


@dataclass(frozen=True)
class Error:
    """The stage stops (exit 1) with one line ``STAGE: error: ...`` holding each of ``says``,
    and leaves its outputs as they were."""

    says: tuple[str, ...]


@dataclass(frozen=True)
class Rejected:
    """prepare succeeds; rejected.csv lists ``path`` (``table_row``, NA for a source without a
    table) once, with a reason holding ``reason``; the index keeps the ``kept`` other images."""

    path: str
    reason: str
    table_row: int | None = None
    kept: int = 4


@dataclass(frozen=True)
class Issue:
    """prepare succeeds and keeps the image; issues.csv reports ``value`` of ``column`` at
    ``table_row`` with a reason holding ``reason``; the index leaves the value missing."""

    table_row: int
    column: str
    value: str
    reason: str


@dataclass(frozen=True)
class Accepted:
    """The stage succeeds; ``check(folder)`` asserts that its artifacts are right."""

    check: Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    id: str
    stage: str  # stages.STAGE, run with its dvc.yaml arguments (matrix stages: scheme none)
    build: Callable[[Path], None]  # writes params.yaml and the inputs into an empty folder
    expect: Error | Rejected | Issue | Accepted


# ----------------------------------------------------------------------------------- images


def _save(path: Path, image: Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def gray(seed: int, shape=(20, 24)) -> Callable[[Path], None]:
    """A random 8-bit gray PNG (distinct seeds: distinct pixels, so no duplicates)."""
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return lambda path: _save(path, Image.fromarray(pixels))


def encoded(fmt: str, seed: int = 99) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def raw_bytes(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return write


def ramp16(path: Path) -> None:
    """A 12-bit X-ray stored in 16 bits: a left-to-right ramp 0..4095 (8 bits would clip it)."""
    ramp = np.tile(np.linspace(0, 4095, 24), (20, 1)).astype(np.uint16)
    _save(path, Image.fromarray(ramp))


def ramp_float(path: Path) -> None:
    """A 32-bit float TIFF, a ramp from -1 to 1."""
    _save(path, Image.fromarray(np.tile(np.linspace(-1, 1, 24), (20, 1)).astype(np.float32)),
          format="TIFF")


def halves(mode: str, left, right, fmt: str = "PNG") -> Callable[[Path], None]:
    """An image of ``mode`` whose left half is colour ``left``, the right half ``right``."""
    def write(path: Path) -> None:
        image = Image.new(mode, (24, 20), right)
        image.paste(Image.new(mode, (12, 20), left), (0, 0))
        _save(path, image, format=fmt)
    return write


def palette(path: Path) -> None:
    """A palette (P) PNG: index 0 blue on the left, index 1 yellow on the right."""
    image = Image.new("P", (24, 20), 1)
    image.paste(0, (0, 0, 12, 20))
    image.putpalette([0, 0, 255, 255, 255, 0] + [0, 0, 0] * 254)
    _save(path, image)


def bomb_header(path: Path) -> None:
    """A PNG whose header claims 30000 x 30000 pixels (a decompression bomb), and no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    raw_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
              + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))(path)


def symlink(target: str) -> Callable[[Path], None]:
    """A symbolic link to ``target`` (relative to the link's folder)."""
    def write(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    return write


def copy_of(rel: str) -> Callable[[Path], None]:
    """The same bytes as the image ``rel`` of the data root (the good images are made first)."""
    def write(path: Path) -> None:
        root = next(p for p in path.parents if p.name == ROOT)
        raw_bytes((root / rel).read_bytes())(path)
    return write


# ------------------------------------------------------------------------- params and data


def params(folder: Path, *sections: dict) -> None:
    """params.yaml: the csv source under ``raw/``, tiny fast prepare, then ``sections`` merged."""
    merged = {"data": {"source": "csv", "root": ROOT},
              "prepare": {"size": SIZE, "workers": 1, "max_rejected_fraction": 0.5}}
    for extra in sections:
        for name, values in extra.items():
            merged[name] = {**merged.get(name, {}), **values} if isinstance(values, dict) \
                else values
    (folder / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))


GOOD = [("good/img000.png", "0"), ("good/img001.png", "1"), ("good/img002.png", "0"),
        ("good/img003.png", "1")]  # table rows 0..3 of every csv case; hostile rows start at 4


def csv_data(rows=(), *, files=None, columns=("path", "label"), good=True,
             table: bytes | None = None, section=None) -> Callable[[Path], None]:
    """A csv source: the :data:`GOOD` rows (unless ``good`` is false) then ``rows`` (empty
    cells for the columns they lack), or the bytes ``table``; ``files``: {path under raw/:
    maker}; ``section``: params merged over the defaults."""
    def build(folder: Path) -> None:
        root = folder / ROOT
        root.mkdir()
        for i, (rel, _) in enumerate(GOOD):
            gray(i)(root / rel)
        for rel, make in (files or {}).items():
            make(root / rel)
        head = [r + ("",) * (len(columns) - 2) for r in GOOD] if good else []
        frame = pd.DataFrame([*head, *rows], columns=list(columns))
        (folder / TABLE).write_bytes(frame.to_csv(index=False).encode() if table is None
                                     else table)
        params(folder, section or {})
    return build


def outside(build_data: Callable[[Path], None]) -> Callable[[Path], None]:
    """``build_data``, and an image beside the data root: what escaping paths would reach."""
    def build(folder: Path) -> None:
        gray(50)(folder / "outside.png")
        build_data(folder)
    return build


OUT = "../outside.png"  # that image, as a path relative to the data root


def _split_images() -> dict:
    """train/ and test/ with 2 malade and 2 sain images each, and one x0.png (other pixels)
    in both train/malade and test/malade."""
    names = [f"{part}/{cls}/{cls}{i}.png" for part in ("train", "test")
             for cls in ("malade", "sain") for i in range(2)]
    names += ["train/malade/x0.png", "test/malade/x0.png"]
    return {name: gray(seed) for seed, name in enumerate(names, start=10)}


SPLIT_IMAGES = _split_images()


def folder_data(images: dict, metadata: pd.DataFrame | None = None,
                meta_bytes: bytes | None = None) -> Callable[[Path], None]:
    """A folder source (``[split/]class/*`` under raw/, malade = 1) with an optional
    metadata.csv, from a table or as bytes."""
    def build(folder: Path) -> None:
        for rel, make in images.items():
            make(folder / ROOT / rel)
        data = meta_bytes if metadata is None else metadata.to_csv(index=False).encode()
        if data is not None:
            (folder / TABLE).write_bytes(data)
        params(folder, {"data": {"source": "folder", "positive_folder": "malade"}})
    return build


def nih_data(table: bytes) -> Callable[[Path], None]:
    """An NIH source: its table, as these bytes, and no image."""
    def build(folder: Path) -> None:
        (folder / ROOT).mkdir()
        (folder / ROOT / "Data_Entry_2017.csv").write_bytes(table)
        params(folder, {"data": {"source": "nih"}})
    return build


def params_only(text: str | None) -> Callable[[Path], None]:
    """Just params.yaml, as this text (None: no params.yaml at all)."""
    def build(folder: Path) -> None:
        if text is not None:
            (folder / "params.yaml").write_text(text)
    return build


def artifacts(n: int = 40, *, labels=None, s=None, split=None, sections=None,
              decisions: bool = False, rejected=(), drop=(), then=None) -> Callable[[Path], None]:
    """The artifacts the stages after prepare read, at their dvc.yaml paths, built by hand.

    ``labels``, ``s``, ``split``: per-row values (default: alternating labels, s alternating
    by pairs so that each group holds both labels, 60/20/20 split); ``decisions``: write
    data/decisions/none/seed0.parquet (method fixed) and train's health file; ``rejected``: the rows
    (path, table_row, reason) of prepare's rejected.csv; ``drop``: paths not to write;
    ``then(folder)``: a last touch (corrupt a file, ...).
    """
    def build(folder: Path) -> None:
        rows = np.arange(n)
        y = np.asarray(labels if labels is not None else rows % 2, dtype=np.int8)
        bias = np.asarray(s if s is not None else rows // 2 % 2, dtype=np.int8)
        part = np.asarray(split if split is not None else
                          np.where(rows < 0.6 * n, "train", np.where(rows < 0.8 * n, "val",
                                                                     "test")))
        index = pd.DataFrame({"row": rows, "image_id": [f"i{i}" for i in rows], "label": y,
                              "patient_id": pd.Series([None] * n, dtype="string"),
                              "source": [f"i{i}.png" for i in rows]})
        files = {
            "data/prepared/index.parquet": index,
            "data/bias.parquet": pd.DataFrame({"row": rows, "s": bias}),
            "data/split.parquet": pd.DataFrame({"row": rows, "split": part}),
            "data/weights/none.parquet": pd.DataFrame({"row": rows, "weight": 1.0,
                                                       "mode": "loss"}),
        }
        if decisions:
            files["data/decisions/none/seed0.parquet"] = _decisions(y, part)
        for rel, frame in files.items():
            if rel not in drop:
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                frame.to_parquet(folder / rel, index=False)
        (folder / "data/prepared").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(list(rejected), columns=["path", "table_row", "reason"]).to_csv(
            folder / "data/prepared/rejected.csv", index=False)
        if "data/prepared/pixels.npy" not in drop:
            pixels = np.random.default_rng(0).integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8)
            np.save(folder / "data/prepared/pixels.npy", pixels)
        if decisions and "metrics/health/none/seed0.json" not in drop:
            (folder / "metrics/health/none").mkdir(parents=True)
            (folder / "metrics/health/none/seed0.json").write_text(
                json.dumps({"scheme": "none", "degenerate": None}))
        if decisions and "metrics/thresholds/none/seed0.json" not in drop:
            (folder / "metrics/thresholds/none").mkdir(parents=True)
            (folder / "metrics/thresholds/none/seed0.json").write_text(
                json.dumps({"fixed": {"threshold": 0.5}}))
        base = {"weights": {"schemes": ["none"], "groups": ["s"]}, "train": {"seeds": [0]},
                "evaluate": {"groups": ["s"], "n_boot": 0, "n_perm": 0}}
        params(folder, base, sections or {})
        if then:
            then(folder)
    return build


def _decisions(y, part) -> pd.DataFrame:
    """Decisions of method ``fixed`` on val and test rows, scores near the label."""
    rows = np.flatnonzero(np.isin(part, ["val", "test"]))
    rng = np.random.default_rng(1)
    score = 0.3 * y[rows] + 0.7 * rng.random(len(rows))
    decision = (score > 0.5).astype(np.int8)
    return pd.DataFrame({"row": rows, "split": part[rows], "method": "fixed", "threshold": 0.5,
                         "score": score, "decision": decision, "decision_s0": decision,
                         "decision_s1": decision})


def npy(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def overwrite(rel: str, data: bytes) -> Callable[[Path], None]:
    """Write ``data`` at ``rel`` of the case's folder (a corrupt artifact)."""
    return lambda folder: raw_bytes(data)(folder / rel)


def state_dict_file(kind: str, at: str = f"{ROOT}/weights.pth") -> Callable[[Path], None]:
    """A file torch.load may meet at ``at``: ``text`` (a web page saved instead of the
    weights), ``truncated`` (half a download), ``tensor`` (a bare tensor), ``dict`` (a state
    dict that is not what the reader expects)."""
    def then(folder: Path) -> None:
        import torch

        if kind == "text":
            raw_bytes(b"<html>404 Not Found</html>\n")(folder / at)
            return
        buffer = io.BytesIO()
        torch.save(torch.zeros(3) if kind == "tensor" else {"w": torch.zeros(64)}, buffer)
        data = buffer.getvalue()
        raw_bytes(data[: len(data) // 2] if kind == "truncated" else data)(folder / at)
    return then


# ------------------------------------------------------------------ checks of what is kept


def prepared(folder: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """prepare's index and pixels; row i of the index is image i of the pixels."""
    index = pd.read_parquet(folder / "data/prepared/index.parquet")
    pixels = np.load(folder / "data/prepared/pixels.npy")
    assert len(pixels) == len(index) and index["row"].tolist() == list(range(len(index)))
    return index, pixels


def image_of(folder: Path, source: str) -> np.ndarray:
    """The prepared pixels of the image listed as ``source`` (it must be kept, once)."""
    index, pixels = prepared(folder)
    rows = np.flatnonzero(index["source"] == source)
    assert len(rows) == 1, f"{source}: kept {len(rows)} times"
    return pixels[rows[0]].astype(int)


def ramp_kept(name: str) -> Callable[[Path], None]:
    """A left-to-right ramp is scaled to the full 0..255 range by its own range, not clipped."""
    def check(folder: Path) -> None:
        columns = image_of(folder, name).mean(axis=0)
        assert np.all(np.diff(columns) > 0), columns
        assert columns[0] < 40 and columns[-1] > 215, columns
    return check


def sides(name: str, left: int, right: int, tol: int = 4) -> Callable[[Path], None]:
    """The prepared image's first column is gray ``left``, its last ``right`` (+- tol)."""
    def check(folder: Path) -> None:
        image = image_of(folder, name)
        assert np.abs(image[:, 0] - left).max() <= tol, image
        assert np.abs(image[:, -1] - right).max() <= tol, image
    return check


def labels_are(expected: dict) -> Callable[[Path], None]:
    def check(folder: Path) -> None:
        index, _ = prepared(folder)
        assert dict(zip(index["source"], index["label"].tolist(), strict=True)) == expected
    return check


def good_rows_kept(folder: Path) -> None:
    """The 4 good rows of :data:`ACCENTS` are read right (a BOM or CRLF changes nothing)."""
    labels_are({rel: int(label) for rel, label in GOOD})(folder)
    index, _ = prepared(folder)
    assert index["sex"].tolist() == ["F", "M", "F", "M"]


def patient_kept_as_text(folder: Path) -> None:
    index, _ = prepared(folder)
    assert index.set_index("source").loc["good/img000.png", "patient_id"] == "007"


def metadata_of_each_file(folder: Path) -> None:
    """train/malade/x0.png and test/malade/x0.png each get their own row of the metadata."""
    index, _ = prepared(folder)
    got = index.set_index("source").loc[["train/malade/x0.png", "test/malade/x0.png"],
                                        ["patient_id", "sex", "age", "source_split"]]
    assert got.astype(str).values.tolist() == [["p1", "F", "30.0", "train"],
                                               ["p2", "M", "70.0", "test"]]


def honest_nan_summary(folder: Path) -> None:
    """No positive test image: every figure that needs one is null, and nothing else breaks."""
    figures = json.loads((folder / "metrics/fairness.json").read_text())
    grid = pd.read_csv(folder / "metrics/grid.csv")
    assert len(grid) == 1 and grid["balanced_accuracy"].isna().all()
    assert figures["baseline"]["balanced_accuracy"] is None


def duplicates_counted(folder: Path) -> None:
    """The audit counts the images prepare left out, duplicates first."""
    summary = json.loads((folder / "metrics/audit.json").read_text())
    assert summary["rejected"] == {"n": 3, "duplicates": 2,
                                   "by_kind": {"duplicate": 2, "missing file": 1}}
    assert any("2 duplicate image(s)" in w for w in summary["warnings"]), summary["warnings"]


def params_ok(folder: Path) -> None:
    assert (folder / "data/params.ok").read_text() == "params.yaml is valid\n"


# ------------------------------------------------------------------------------- the cases

CPU = {"train": {"device": "cpu", "epochs": 1}}
RESNET = {"train": {**CPU["train"], "model": "resnet18", "pretrained": f"{ROOT}/weights.pth"}}
ACCENTS = "path,label,sex\n" + "".join(f"{p},{y},{s}\n" for (p, y), s in zip(
    GOOD, ["Féminin", "Homme", "féminin", "M"], strict=True))
NO_POSITIVE_TEST = np.where(np.arange(40) < 32, np.arange(40) % 2, 0)

CASES: list[Case] = [
    # ---- image files (csv source; the hostile image is table row 4) ----
    Case("truncated-png", "prepare", csv_data([("bad.png", "1")], files={
        "bad.png": raw_bytes(encoded("PNG")[:300])}),
        Rejected("bad.png", "truncated image", 4)),
    Case("truncated-jpeg", "prepare", csv_data([("bad.jpg", "1")], files={
        "bad.jpg": raw_bytes(encoded("JPEG")[:1000])}),
        Rejected("bad.jpg", "truncated image", 4)),
    Case("jpeg-cut-in-its-header", "prepare", csv_data([("bad.jpg", "1")], files={
        "bad.jpg": raw_bytes(encoded("JPEG")[:400])}),
        Rejected("bad.jpg", "Truncated File Read", 4)),
    Case("empty-file", "prepare", csv_data([("empty.png", "0")], files={
        "empty.png": raw_bytes(b"")}),
        Rejected("empty.png", "empty file", 4)),
    Case("text-named-png", "prepare", csv_data([("notes.png", "0")], files={
        "notes.png": raw_bytes(b"patient notes, not an image\n")}),
        Rejected("notes.png", "unreadable (UnidentifiedImageError", 4)),
    Case("text-in-a-folder-named-truncated", "prepare", csv_data([("truncated/notes.png", "0")],
        files={"truncated/notes.png": raw_bytes(b"patient notes\n")}),
        Rejected("truncated/notes.png", "unreadable (UnidentifiedImageError", 4)),
    Case("decompression-bomb-header", "prepare", csv_data([("bomb.png", "0")], files={
        "bomb.png": bomb_header}),
        Rejected("bomb.png", "unreadable (DecompressionBombError", 4)),
    Case("image-1x1", "prepare", csv_data([("dot.png", "0")], files={
        "dot.png": gray(5, (1, 1))}),
        Rejected("dot.png", "too small: 1x1 px (prepare.min_side = 8)", 4)),
    Case("image-10000x10", "prepare", csv_data([("strip.png", "1")], files={
        "strip.png": gray(5, (10, 10000))}),
        Rejected("strip.png", "extreme aspect ratio: 10000x10 px, 1000:1", 4)),
    Case("png-16-bit-scaled", "prepare", csv_data([("deep.png", "1")], files={
        "deep.png": ramp16}), Accepted(ramp_kept("deep.png"))),
    Case("tiff-float-scaled", "prepare", csv_data([("float.tif", "1")], files={
        "float.tif": ramp_float}), Accepted(ramp_kept("float.tif"))),
    Case("jpeg-cmyk", "prepare", csv_data([("cmyk.jpg", "1")], files={
        "cmyk.jpg": halves("CMYK", (0, 0, 0, 255), (0, 0, 0, 0), "JPEG")}),
        Accepted(sides("cmyk.jpg", 0, 255, tol=12))),
    Case("png-rgba-alpha-dropped", "prepare", csv_data([("rgba.png", "1")], files={
        "rgba.png": halves("RGBA", (255, 0, 0, 0), (255, 0, 0, 255))}),
        Accepted(sides("rgba.png", 76, 76))),  # the luma of red on both halves
    Case("png-palette", "prepare", csv_data([("palette.png", "1")], files={
        "palette.png": palette}), Accepted(sides("palette.png", 29, 226))),  # blue | yellow
    Case("jpeg-named-png", "prepare", csv_data([("really-jpeg.png", "1")], files={
        "really-jpeg.png": halves("RGB", (0, 0, 0), (255, 255, 255), "JPEG")}),
        Accepted(sides("really-jpeg.png", 0, 255, tol=12))),
    # ---- paths ----
    Case("path-absolute", "prepare", csv_data([("/data/img.png", "1")]),
         Rejected("/data/img.png", "absolute path", 4)),
    Case("path-windows-drive", "prepare", csv_data([("C:\\xrays\\img.png", "1")]),
         Rejected("C:\\xrays\\img.png", "absolute path", 4)),
    Case("path-dotdot-escape", "prepare", outside(csv_data([(OUT, "1")])),
         Rejected(OUT, "outside the data root", 4)),
    Case("path-dotdot-inside-then-out", "prepare", outside(csv_data([(f"good/../{OUT}", "1")])),
         Rejected(f"good/../{OUT}", "outside the data root", 4)),
    Case("symlink-escape", "prepare", outside(csv_data([("link.png", "1")], files={
        "link.png": symlink(OUT)})), Rejected("link.png", "outside the data root", 4)),
    Case("missing-image", "prepare", csv_data([("good/img999.png", "1")]),
         Rejected("good/img999.png", "missing file", 4)),
    Case("path-is-a-folder", "prepare", csv_data([("good", "1")]),
         Rejected("good", "not a file", 4)),
    Case("path-empty", "prepare", csv_data([("", "1")]), Rejected("", "empty path", 4)),
    # ---- duplicates ----
    Case("duplicate-repeated-path", "prepare", csv_data([("good/img000.png", "0")]),
         Rejected("good/img000.png", "duplicate of good/img000.png (table row 0)", 4)),
    Case("duplicate-via-dotdot", "prepare", csv_data([("h/../good/img000.png", "0")]),
         Rejected("h/../good/img000.png", "duplicate of good/img000.png (table row 0)", 4)),
    Case("duplicate-via-symlink", "prepare", csv_data([("alias.png", "0")], files={
        "alias.png": symlink("good/img000.png")}),
        Rejected("alias.png", "duplicate of good/img000.png (table row 0)", 4)),
    Case("duplicate-same-pixels", "prepare", csv_data([("copy.png", "0")], files={
        "copy.png": copy_of("good/img000.png")}),
        Rejected("copy.png", "duplicate of good/img000.png (table row 0)", 4)),
    Case("duplicate-path-two-labels", "prepare", csv_data(
        [("h/../good/img000.png", "1", "p9")], columns=("path", "label", "patient_id")),
        Error(("good/img000.png (table row 0) has label 0", "h/../good/img000.png (table row 4)",
               "one image cannot be both 0 and 1"))),
    Case("duplicate-pixels-two-labels", "prepare", csv_data([("copy.png", "1")], files={
        "copy.png": copy_of("good/img000.png")}),
        Error(("good/img000.png (table row 0) has label 0", "copy.png (table row 4) label 1",
               "same image (same pixels after preparation)"))),
    # ---- labels ----
    Case("label-2", "prepare", csv_data([("extra.png", "2")], files={"extra.png": gray(7)}),
         Rejected("extra.png", "label 2 is not 0/1", 4)),
    Case("label-minus-1", "prepare", csv_data([("extra.png", "-1")], files={
        "extra.png": gray(7)}), Rejected("extra.png", "label -1 is not 0/1", 4)),
    Case("label-maybe", "prepare", csv_data([("extra.png", "maybe")], files={
        "extra.png": gray(7)}), Rejected("extra.png", "label maybe is not 0/1", 4)),
    Case("label-empty", "prepare", csv_data([("extra.png", "")], files={"extra.png": gray(7)}),
         Rejected("extra.png", "is not 0/1", 4)),
    Case("label-spelt-yes-no", "prepare", csv_data(
        [("a.png", "yes"), ("b.png", "FALSE"), ("c.png", "1.0")],
        files={"a.png": gray(7), "b.png": gray(8), "c.png": gray(9)}),
        Accepted(labels_are({**{rel: int(y) for rel, y in GOOD},
                             "a.png": 1, "b.png": 0, "c.png": 1}))),
    # ---- the table ----
    Case("table-header-only", "prepare", csv_data(good=False),
         Error(("0 usable images in data.root = raw", "the source lists no image"))),
    Case("table-zero-bytes", "prepare", csv_data(table=b""),
         Error((TABLE,))),
    Case("table-one-class", "prepare", csv_data(table=b"path,label\n" + b"".join(
        f"{p},1\n".encode() for p, _ in GOOD)),
        Error(("every image has label 1 (4 images, 0 rejected)", "data.label_column"))),
    Case("table-no-label-column", "prepare", csv_data(table=b"path,diagnosis\ngood/img000.png,0\n"),
         Error((f"{TABLE} (data.label_column): column(s) ['label'] not found",
                "available: ['path', 'diagnosis']"))),
    Case("table-no-path-column", "prepare", csv_data(table=b"file,label\ngood/img000.png,0\n"),
         Error((f"{TABLE} (data.path_column): column(s) ['path'] not found",))),
    Case("table-semicolons", "prepare", csv_data(table=b"path;label\ngood/img000.png;0\n"),
         Error((f"{TABLE} (data.path_column)", "available: ['path;label']"))),
    Case("table-ragged-row", "prepare", csv_data(table=(
        "path,label\n" + "".join(f"{p},{y}\n" for p, y in GOOD) + "x.png,1,extra\n").encode()),
        Error((TABLE, "line 6"))),
    Case("table-latin-1", "prepare", csv_data(table=ACCENTS.encode("latin-1")),
         Error((TABLE, "UTF-8"))),
    Case("table-utf-16", "prepare", csv_data(table=ACCENTS.encode("utf-16")),
         Error((TABLE, "UTF-8"))),
    Case("table-utf-8-bom", "prepare", csv_data(table=ACCENTS.encode("utf-8-sig")),
         Accepted(good_rows_kept)),
    Case("table-crlf", "prepare", csv_data(table=ACCENTS.replace("\n", "\r\n").encode()),
         Accepted(good_rows_kept)),
    Case("table-missing", "prepare", csv_data(section={"data": {"table": "nope.csv"}}),
         Error(("data.table", f"{ROOT}/nope.csv not found"))),
    Case("root-missing", "prepare", csv_data(section={"data": {"root": "no/such/folder"}}),
         Error(("data.root: no/such/folder is not a folder",))),
    Case("attribute-column-missing", "prepare", csv_data(section={
        "data": {"attributes": ["race"]}}),
        Error((f"{TABLE} (data.attributes): column(s) ['race'] not found",))),
    Case("views-without-view-column", "prepare", csv_data(section={"data": {"views": ["PA"]}}),
         Error((f"{TABLE} (data.views): column(s) ['view'] not found",))),
    # ---- metadata values (reported in issues.csv, left missing, image kept) ----
    Case("age-negative", "prepare", csv_data([("extra.png", "1", "-5")], files={
        "extra.png": gray(7)}, columns=("path", "label", "age")),
        Issue(4, "age", "-5", "implausible age")),
    Case("age-413", "prepare", csv_data([("extra.png", "1", "413")], files={
        "extra.png": gray(7)}, columns=("path", "label", "age")),
        Issue(4, "age", "413", "implausible age")),
    Case("age-text", "prepare", csv_data([("extra.png", "1", "about 40")], files={
        "extra.png": gray(7)}, columns=("path", "label", "age")),
        Issue(4, "age", "about 40", "unparseable age")),
    Case("sex-unknown", "prepare", csv_data([("extra.png", "1", "X")], files={
        "extra.png": gray(7)}, columns=("path", "label", "sex")),
        Issue(4, "sex", "X", "unrecognised sex")),
    Case("patient-id-leading-zeros", "prepare", csv_data(table=(
        "path,label,patient_id\n" + "".join(f"{p},{y},00{7 + i}\n" for i, (p, y) in
                                            enumerate(GOOD))).encode()),
        Accepted(patient_kept_as_text)),
    # ---- folder source ----
    Case("folder-join-on-path", "prepare", folder_data(SPLIT_IMAGES, pd.DataFrame({
        "path": ["train/malade/x0.png", "test/malade/x0.png"], "patient_id": ["p1", "p2"],
        "sex": ["F", "M"], "age": ["30", "70"]})), Accepted(metadata_of_each_file)),
    Case("folder-ambiguous-base-name", "prepare", folder_data(SPLIT_IMAGES, pd.DataFrame({
        "path": ["x0.png"], "patient_id": ["p1"], "sex": ["F"], "age": ["30"]})),
        Error((f"{TABLE}: base name x0.png matches 2 images", "test/malade/x0.png",
               "train/malade/x0.png"))),
    Case("folder-one-image-two-rows", "prepare", folder_data(SPLIT_IMAGES, pd.DataFrame({
        "path": ["train/malade/x0.png", "train/malade/x0.png"], "patient_id": ["p1", "p2"],
        "sex": ["F", "M"], "age": ["30", "70"]})),
        Error((TABLE, "train/malade/x0.png"))),
    Case("folder-metadata-latin-1", "prepare", folder_data(SPLIT_IMAGES, meta_bytes=(
        "path,sex\ntrain/malade/x0.png,Féminin\n").encode("latin-1")),
        Error((TABLE, "UTF-8"))),
    Case("folder-stray-folder", "prepare", folder_data(
        {**SPLIT_IMAGES, "backup/malade/b.png": gray(60)}),
        Error(("data.root: folder", "backup is neither a split folder"))),
    Case("folder-symlink-escape", "prepare", outside(folder_data(
        {**SPLIT_IMAGES, "train/sain/link.png": symlink("../../../outside.png")})),
        Rejected("train/sain/link.png", "outside the data root", None, kept=10)),
    # ---- NIH source ----
    Case("nih-table-latin-1", "prepare", nih_data(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
        "View Position\n00000001_000.png,Café,0,1,58,M,PA\n".encode("latin-1")),
        Error((f"{ROOT}/Data_Entry_2017.csv", "UTF-8"))),
    # ---- params.yaml (the params stage runs first in the DAG; every stage checks it too) ----
    Case("param-unknown-key", "params", params_only("bias:\n  p_1: 0.9\n"),
         Error(("params.yaml: bias.p_1 = 0.9 is not allowed", "did you mean p1?"))),
    Case("param-unknown-section", "params", params_only("trian:\n  epochs: 3\n"),
         Error(("params.yaml: trian", "did you mean train?"))),
    Case("param-extra-key-plus", "params", params_only("bias:\n  p0: 0.1\n  foo: 1\n"),
         Error(("params.yaml: bias.foo = 1 is not allowed",))),
    Case("param-lr-inf", "params", params_only("train:\n  lr: .inf\n"),
         Error(("params.yaml: train.lr = inf is not allowed", "finite"))),
    Case("param-negative-seed", "params", params_only("bias:\n  seed: -1\n"),
         Error(("params.yaml: bias.seed = -1 is not allowed", "integer >= 0"))),
    Case("param-invalid-yaml", "params", params_only("bias:\n  p0: [0.1\n"),
         Error(("params.yaml: not valid YAML", "line"))),
    Case("param-not-a-mapping", "params", params_only("- data\n- prepare\n"),
         Error(("params.yaml: expected a mapping of sections, got list",))),
    Case("param-section-not-a-mapping", "params", params_only("bias: 0.1\n"),
         Error(("params.yaml: bias = 0.1 is not allowed", "mapping"))),
    Case("param-quoted-number", "params", params_only('prepare:\n  size: "32"\n'),
         Error(("params.yaml: prepare.size = '32' is not allowed",))),
    Case("param-p0-above-1", "params", params_only("bias:\n  p0: 1.5\n"),
         Error(("params.yaml: bias.p0 = 1.5 is not allowed", "[0, 1]"))),
    Case("param-fractions-sum", "params", params_only(
        "split:\n  fractions: {train: 0.6, val: 0.3, test: 0.3}\n"),
        Error(("params.yaml: split.fractions",))),
    Case("param-duplicate-key", "params", params_only("bias:\n  p0: 0.1\n  p0: 0.2\n"),
         Error(("params.yaml: not valid YAML", 'duplicate key "p0"'))),
    Case("param-yes-for-bool", "params", params_only("train:\n  augment: yes\n"),
         Error(("params.yaml: train.augment = 'yes' is not allowed",))),
    Case("param-missing-file", "params", params_only(None),
         Error(("params.yaml: file not found",))),
    Case("param-empty-file", "params", params_only(""), Accepted(params_ok)),
    Case("param-bad-value-at-a-data-stage", "prepare", csv_data(section={
        "prepare": {"min_side": 0}}),
        Error(("params.yaml: prepare.min_side = 0 is not allowed",))),
    # ---- the artifacts between stages ----
    Case("artifact-missing-index", "bias", artifacts(drop=("data/prepared/index.parquet",)),
         Error(("data/prepared/index.parquet: missing; run the stage that writes it",))),
    Case("artifact-index-not-parquet", "bias", artifacts(then=overwrite(
        "data/prepared/index.parquet", b"row,label\n0,1\n")),
        Error(("data/prepared/index.parquet",))),
    Case("artifact-index-without-label", "bias", artifacts(then=lambda folder: pd.DataFrame(
        {"row": np.arange(40)}).to_parquet(folder / "data/prepared/index.parquet")),
        Error(("data/prepared/index.parquet", "['label']"))),
    Case("artifact-rows-mismatch", "split", artifacts(then=lambda folder: pd.DataFrame(
        {"row": np.arange(30), "s": 0}).to_parquet(folder / "data/bias.parquet")),
        Error(("data/bias.parquet: covers 30 rows, the index 40",))),
    Case("split-val-without-a-class", "split", artifacts(
        labels=(np.arange(40) == 0).astype(int), s=np.zeros(40),
        sections={"split": {"stratify": ["label"]}}),
        Error(("part has no image with label 1", "split.fractions"))),
    Case("split-test-without-a-group", "split", artifacts(
        s=(np.arange(40) == 0).astype(int), sections={"split": {"stratify": ["label"]}}),
        Error(("part has no image with s = 1", "split.fractions"))),
    Case("split-use-source-without-one", "split", artifacts(sections={
        "split": {"use_source": True}}),
        Error(("split.use_source: column(s) ['source_split'] not found",))),
    Case("audit-counts-duplicates", "audit", artifacts(rejected=[
        ("good/a.png", 3, "duplicate of good/b.png (table row 0)"), ("c.png", 5, "missing file"),
        ("h/../good/b.png", 7, "duplicate of good/b.png (table row 0)")]),
        Accepted(duplicates_counted)),
    Case("audit-empty-index", "audit", artifacts(n=0),
         Error(("the index has 0 rows",))),
    Case("audit-unknown-attribute", "audit", artifacts(sections={
        "audit": {"attributes": ["race"]}}),
        Error(("audit.attributes: column(s) ['race'] not found",))),
    Case("postprocess-missing-predictions", "postprocess", artifacts(),
         Error(("data/predictions/none/seed0.parquet: missing",))),
    Case("train-without-val-rows", "train", artifacts(split=["train"] * 40, sections=CPU),
         Error(("val",))),
    Case("pixels-fewer-rows-than-index", "train", artifacts(sections=CPU, then=overwrite(
        "data/prepared/pixels.npy", npy(np.zeros((10, SIZE, SIZE), np.uint8)))),
        Error(("data/prepared/pixels.npy", "index"))),
    Case("pixels-not-npy", "train", artifacts(sections=CPU, then=overwrite(
        "data/prepared/pixels.npy", b"\x80\x04not an array")),
        Error(("data/prepared/pixels.npy",))),
    Case("pretrained-text-file", "train", artifacts(sections=RESNET, then=state_dict_file(
        "text")), Error((f"train.pretrained: {ROOT}/weights.pth is not readable by torch.load",
                         "expected a torchvision state dict"))),
    Case("pretrained-truncated", "train", artifacts(sections=RESNET, then=state_dict_file(
        "truncated")), Error((f"train.pretrained: {ROOT}/weights.pth is not readable",))),
    Case("pretrained-a-tensor", "train", artifacts(sections=RESNET, then=state_dict_file(
        "tensor")), Error((f"train.pretrained: {ROOT}/weights.pth holds a Tensor",))),
    Case("pretrained-missing", "train", artifacts(sections=RESNET),
         Error((f"train.pretrained: {ROOT}/weights.pth not found", "never downloads"))),
    Case("model-file-corrupt", "predict", artifacts(then=overwrite(
        "models/none/seed0/model.pt", b"version https://git-lfs.github.com/spec/v1\n")),
        Error(("models/none/seed0/model.pt",))),
    Case("model-file-a-state-dict", "predict", artifacts(then=state_dict_file(
        "dict", at="models/none/seed0/model.pt")), Error(("models/none/seed0/model.pt",))),
    Case("model-file-missing", "predict", artifacts(),
         Error(("models/none/seed0/model.pt",))),
    Case("evaluate-all-nan", "evaluate", artifacts(labels=NO_POSITIVE_TEST, decisions=True),
         Accepted(honest_nan_summary)),
    Case("evaluate-missing-decisions", "evaluate", artifacts(decisions=True, drop=(
        "data/decisions/none/seed0.parquet",)),
        Error(("data/decisions/none/seed0.parquet: missing",))),
    Case("evaluate-missing-health", "evaluate", artifacts(decisions=True, drop=(
        "metrics/health/none/seed0.json",)),
        Error(("metrics/health/none/seed0.json",))),
    Case("evaluate-unknown-group", "evaluate", artifacts(decisions=True, sections={
        "evaluate": {"groups": ["sex"]}}),
        Error(("evaluate.groups: column(s) ['sex'] not found",))),
]


def counts(cases: list[Case] = CASES) -> dict[str, int]:
    """How many cases end in each kind of outcome."""
    kinds = [type(case.expect).__name__.lower() for case in cases]
    return {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)}


if __name__ == "__main__":
    print(f"{len(CASES)} hostile inputs: "
          + ", ".join(f"{n} {kind}" for kind, n in counts().items()))
