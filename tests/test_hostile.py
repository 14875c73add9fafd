"""Hostile inputs (issue 11): every case of tests/hostile_cases.py through its stage's real entry.

Each case runs in its own empty folder, in this process (as ``python -m stages.NAME`` with the
arguments of dvc.yaml, through :func:`stages.run`), and must end in a listed rejection, a
metadata issue, right artifacts, or one line ``STAGE: error: ...`` naming the file, row or key:
never a traceback, never a silent wrong result.
"""

import importlib
import shlex
import signal
import sys
import traceback
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

import stages
from tests.conftest import ROOT
from tests.hostile_cases import CASES, Accepted, Error, Issue, Rejected, counts

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SCHEME, SEED = "none", "0"  # the matrix stages run for this scheme and training seed


def _dvc(stage: str) -> tuple[list[str], list[str]]:
    """The stage's arguments and outputs in dvc.yaml (matrix stages: scheme ``none``)."""
    entry = DVC[stage]

    def fill(text: str) -> str:
        return text.replace("${item.scheme}", SCHEME).replace("${item.seed}", SEED)

    argv = shlex.split(fill(entry["cmd"]))
    assert argv[:3] == ["python", "-m", f"stages.{stage}"], argv
    outs = [fill(next(iter(o)) if isinstance(o, dict) else o)
            for key in ("outs", "metrics", "plots") for o in entry.get(key, [])]
    return argv[3:], outs


def _run(stage: str, argv: list[str], monkeypatch) -> tuple[object, str]:
    """Run the stage in this process; (exit code, or "traceback"; what Python would show on
    stderr besides the stage's own lines: warnings and a traceback)."""
    module = importlib.import_module(f"stages.{stage}")
    monkeypatch.setattr(sys, "argv", [f"stages.{stage}", *argv])
    shown = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # as on a terminal: each warning shown once
        try:
            stages.run(module.main, stage)
            code = 0
        except SystemExit as exc:
            code = exc.code
        except Exception:  # noqa: BLE001 - a bug: what the user would see is the traceback
            code, shown = "traceback", traceback.format_exc()
    shown += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                     for w in caught if not issubclass(w.category, DeprecationWarning))
    return code, shown


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """An empty folder to build the case in, as the working directory; what a stage sets for
    its whole process (stages.run's signal handlers, train's deterministic torch) is put back
    afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in stages.STOP_SIGNALS}
    torch = sys.modules.get("torch")
    deterministic = torch.are_deterministic_algorithms_enabled() if torch else None
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    if "torch" in sys.modules:
        sys.modules["torch"].use_deterministic_algorithms(bool(deterministic))


def _lines(text: str) -> list[str]:
    """Non-empty lines; a progress bar's carriage returns separate lines too."""
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()]


def _read_csv(path: Path) -> pd.DataFrame:
    """rejected.csv or issues.csv as written: text, and the table row (empty: none)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return table.assign(table_row=pd.to_numeric(table["table_row"]).astype("Int64"))


def _previous_outputs(folder: Path, outs: list[str]) -> None:
    """Stand-ins for the outputs of an earlier run, where the case has none (a folder output
    gets a file inside), so that a failed stage can be seen to leave them alone."""
    for rel in outs:
        path = folder / rel
        if not path.exists():
            path = path / "previous.csv" if not path.suffix else path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("left by an earlier run\n")


def _snapshot(folder: Path, paths: list[str]) -> dict:
    """The bytes of each file under ``paths`` (folders: every file inside), None if absent."""
    found = {}
    for rel in paths:
        path = folder / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found[rel] = {str(p): p.read_bytes() for p in files if p.exists()} or None
    return found


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(case, folder, monkeypatch, capsys):
    case.build(folder)
    argv, outs = _dvc(case.stage)
    if isinstance(case.expect, Error):
        _previous_outputs(folder, outs)
    before = _snapshot(folder, outs)
    code, shown = _run(case.stage, argv, monkeypatch)
    out, err = capsys.readouterr()
    err += shown
    assert "Traceback" not in out + err, err
    # the stage's own lines and progress bars only: no warning in Python's two-line format
    assert [line for line in _lines(err) if not (line.startswith(case.stage) or "%|" in line)
            ] == [], err
    if isinstance(case.expect, Error):
        assert code == 1, (code, out, err)
        _said_in_one_line(case.stage, case.expect, err, folder)
        assert out == "", out  # no summary line: the stage did not finish
        assert _snapshot(folder, outs) == before  # a failed stage leaves its outputs as they were
        return
    assert code == 0, err
    assert _lines(out)[-1].startswith(case.stage), out  # the summary line
    if isinstance(case.expect, Rejected):
        _listed_as_rejected(case.expect, folder)
    elif isinstance(case.expect, Issue):
        _reported_as_issue(case.expect, folder)
    else:
        assert isinstance(case.expect, Accepted)
        case.expect.check(folder)


def _said_in_one_line(stage: str, expect: Error, err: str, folder: Path) -> None:
    errors = [line for line in _lines(err) if line.startswith(f"{stage}: error: ")]
    assert len(errors) == 1, err
    error = errors[0].replace(str(folder), "<folder>")  # the folder's name holds the case's id
    missing = [part for part in expect.says if part not in error]
    assert not missing, f"{error!r} does not say {missing}"


def _listed_as_rejected(expect: Rejected, folder: Path) -> None:
    rejected = _read_csv(folder / "data/prepared/rejected.csv")
    assert rejected.columns.tolist() == ["path", "table_row", "reason"]
    rows = rejected[rejected["path"] == expect.path]
    assert len(rejected) == len(rows) == 1, rejected
    reason = rows["reason"].iloc[0]
    # the same data gives the same artifact wherever it lies (DVC hashes it)
    assert str(folder) not in reason, reason
    assert expect.reason in reason, reason
    row = rows["table_row"].iloc[0]
    assert (pd.isna(row) if expect.table_row is None else row == expect.table_row), row
    index = pd.read_parquet(folder / "data/prepared/index.parquet")
    assert len(index) == expect.kept and index["source"].is_unique, index["source"]


def _reported_as_issue(expect: Issue, folder: Path) -> None:
    issues = _read_csv(folder / "data/prepared/issues.csv")
    assert len(issues) == 1, issues
    issue = issues.iloc[0]
    assert (issue["table_row"], issue["column"], issue["value"]) == (
        expect.table_row, expect.column, expect.value), issues
    assert expect.reason in issue["reason"], issue["reason"]
    index = pd.read_parquet(folder / "data/prepared/index.parquet")
    assert len(index) == expect.table_row + 1, index  # the image is kept...
    assert pd.isna(index[expect.column].iloc[expect.table_row]), index  # ...the value left out


def test_the_suite_counts_its_cases():
    """docs/development.md's sentence: N hostile inputs, 0 tracebacks, 0 silent results."""
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 45
    assert sum(counts().values()) == len(CASES)
    assert {case.stage for case in CASES} <= set(DVC)
