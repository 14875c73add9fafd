"""The module boundaries the layout promises (docs/development.md), read from the source.

- the library (``biaslab/`` but the command-line edge) neither prints nor reads the
  environment: progress goes through callbacks, devices and ranks are arguments;
- the library never imports the stages;
- no import circle between biaslab modules (imports at module level).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# entry points: they print (and torchrun's environment is read at the edge); the Ray tasks of a
# sweep run on the cluster's workers, whose environment (PATH, CUDA_VISIBLE_DEVICES) they read,
# and their driver joins the cluster as Ray's environment says (RAY_AUTH_MODE)
EDGE = ("biaslab/cli/", "biaslab/__main__.py", "biaslab/config/__main__.py",
        "biaslab/sweep/ray_cluster.py", "biaslab/sweep/ray_task.py")
LIBRARY = sorted(p for p in (ROOT / "biaslab").rglob("*.py")
                 if not p.relative_to(ROOT).as_posix().startswith(EDGE))


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def side_effects(tree: ast.AST) -> list[str]:
    """Uses of print, os.environ / os.getenv, sys.stdout / sys.stderr and tqdm in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
            found.append(f"line {node.lineno}: print()")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                (node.value.id, node.attr) in {("os", "environ"), ("os", "getenv"),
                                               ("sys", "stdout"), ("sys", "stderr")}):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [
                a.name for a in node.names]
            found += [f"line {node.lineno}: import {n}" for n in names if n and (
                n.split(".")[0] == "tqdm" or n.split(".")[0] == "stages")]
    return found


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_library_neither_prints_nor_reads_the_environment(path):
    assert side_effects(ast.parse(path.read_text())) == []


def test_the_check_sees_a_print_and_the_environment():
    code = "import os, sys\nfrom tqdm import tqdm\nprint(os.environ['RANK'], file=sys.stderr)\n"
    assert len(side_effects(ast.parse(code))) == 4


def _module_imports(path: Path) -> set[str]:
    """biaslab modules imported at module level (not inside functions: those run late)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {n for n in out if n.startswith("biaslab")}


def test_no_import_circle():
    files = {_name(p): p for p in (ROOT / "biaslab").rglob("*.py")}
    graph = {name: {m for m in _module_imports(path) if m in files and m != name}
             for name, path in files.items()}
    # a package imports its __init__ first: count a submodule's package as imported too
    for name, deps in graph.items():
        for dep in list(deps):
            parent = dep.rsplit(".", 1)[0]
            if parent in files and parent != name and not name.startswith(parent + "."):
                deps.add(parent)
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_folders_say_what_the_library_is_made_of():
    """The library lives in packages named for the pipeline's concepts; its top level holds
    the entry point and the artifact writers only, and tools/ no product code (issue 19)."""
    top = sorted(p.name for p in (ROOT / "biaslab").glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "artifacts.py"]
    packages = sorted(p.name for p in (ROOT / "biaslab").iterdir()
                      if (p / "__init__.py").is_file())
    assert packages == ["audit", "cli", "config", "data", "explain", "fairness", "model",
                        "report", "sweep"]
    assert sorted(p.name for p in (ROOT / "tools").glob("*.py")) == []
