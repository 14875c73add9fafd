"""dvc.yaml lists, for every stage, exactly the code it runs.

A missing dependency lets a code change go unnoticed (stale artifacts); an extra one reruns a
stage for nothing. The stage's own module and every biaslab module it imports, transitively
(imports inside functions included), read from the source without importing anything, must
be its deps; biaslab/config and biaslab/io are left out on purpose (dvc.yaml's header says
why). A listed folder (biaslab/fairness/thresholds) stands for every module in it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
UNLISTED = ("biaslab/config", "biaslab/artifacts.py", "biaslab/__init__.py")
# error and warning lines, shared by every stage
STAGE_HELPERS = ("stages/__init__.py", "biaslab/cli/warning_lines.py")


def _module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def docstring_only(path: Path) -> bool:
    """A module of nothing but its docstring: importing it runs no code."""
    body = ast.parse(path.read_text(), str(path)).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
               for node in body)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] in ("biaslab", "stages")}


def code_files(module: str) -> set[str]:
    """Repository-relative paths of ``module``'s file and every project module it imports,
    not looking into the unlisted modules (config reads the method names of thresholds)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        # importing a.b.c runs a/__init__.py and a/b/__init__.py too
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                if not path.relative_to(ROOT).as_posix().startswith(UNLISTED):
                    todo += _imports(path)
    return {p.relative_to(ROOT).as_posix() for p in seen if not docstring_only(p)}


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _listed(deps: list[str]) -> set[str]:
    out = set()
    for dep in deps:
        path = ROOT / dep
        if path.is_dir() and dep.startswith(("biaslab", "stages")):
            out |= {p.relative_to(ROOT).as_posix() for p in path.rglob("*.py")
                    if not docstring_only(p)}
        elif dep.endswith(".py"):
            out.add(dep)
    return out


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_are_the_code_it_runs(name):
    stage = _stages()[name]
    module = stage["cmd"].split("python -m ", 1)[1].split()[0]
    needed = {f for f in code_files(module)
              if not f.startswith(UNLISTED) and f not in STAGE_HELPERS}
    listed = _listed(stage["deps"])
    assert sorted(needed - listed) == [], f"{name}: code it runs but does not depend on"
    assert sorted(listed - needed) == [], f"{name}: deps it never imports"


def test_check_finds_a_missing_dependency():
    """The check itself: evaluate imports groups, and a dep list without it is caught."""
    assert "biaslab/data/group_keys.py" in code_files("stages.evaluate")
    assert "biaslab/data/group_keys.py" not in _listed(
        ["stages/evaluate.py", "biaslab/fairness/evaluate.py"])


def test_train_depends_on_every_train_key_but_the_seeds():
    """train lists its keys one by one, leaving out train.seeds (the matrix's seed is in its
    command): adding a seed trains that seed only, and no other key is forgotten."""
    from biaslab.config import TrainConfig

    listed = {p for p in _stages()["train"]["params"] if p.startswith("train.")}
    assert listed == {f"train.{key}" for key in TrainConfig.model_fields if key != "seeds"}


def test_split_depends_on_every_key_its_column_check_reads():
    """split checks every column a param names (biaslab.config.columns): a key it reads but
    does not depend on would leave a new misspelt column unchecked until evaluate."""
    from biaslab.config import Params
    from biaslab.config.columns import checked_params

    params = _stages()["split"]["params"]
    covered = {key for key in checked_params(Params)
               if key in params or key.split(".")[0] in params}
    assert sorted(set(checked_params(Params)) - covered) == []
    assert "data.source" in params  # split.train_size: auto reads the source
