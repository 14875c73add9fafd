"""Shared fixtures: tiny data that every test can build in milliseconds, and tiny DVC repos.

The end-to-end tests each get a repo of their own (a copy of one built once per run, shared by
pytest-xdist's workers), so that they pass alone, in any order, on any worker: `pytest --reverse`
runs the collected tests backwards.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)  # dvc and python of this environment
SHARED = ROOT.parent / "shared"

# What a DVC repo of biaslab needs, and params that make the whole pipeline take about a minute.
REPO_FILES = ["dvc.yaml", "params.yaml", "stages", "biaslab", ".dvc/config", ".dvcignore",
              ".gitignore"]
TINY = {
    "data": {"negative": [1], "positive": [7]},  # 361 images
    "prepare": {"size": 12},
    "split": {"train_size": 0},
    "train": {"epochs": 2, "width": 4, "batch_size": 64, "seeds": [0]},
    "evaluate": {"n_boot": 50, "n_perm": 200},
    "explain": {"share_images": 16, "rotations": [0.0, 20.0], "noise": [0.0, 0.5]},
}


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true",
                     help="run the collected tests in reverse order (checks their independence)")


# The longest tests, longest first (minutes each on the 2-core CI machine; docs/development-ci.md)
# (the documented `make repro`, at the defaults, is also the start of two more documented blocks)
LONGEST = ("tests/test_container.py::", "tests/test_ray_sweep.py::test_a_sweep_on_a_two_node",
           "tests/test_documented_commands.py::test_block_two_commands",
           "tests/test_documented_commands.py::test_block_ray_one_machine")


def start_order(item) -> tuple[int, int]:
    """Where ``item`` starts: the longest tests, then the other slow ones, then the quick ones.

    pytest-xdist (`make test` runs it, pyproject's addopts) deals the tests out in this order,
    one to each worker in turn: the container build, the longest, starts at once and overlaps
    the rest of the suite rather than running at its end, and the quick tests fill the workers'
    last minutes.
    """
    rank = next((i for i, prefix in enumerate(LONGEST) if item.nodeid.startswith(prefix)), None)
    if rank is not None:
        return 0, rank
    return (1 if item.get_closest_marker("slow") else 2), 0


def pytest_collection_modifyitems(config, items):
    items.sort(key=start_order)  # stable: collection order within each rank
    if config.getoption("--reverse"):
        items.reverse()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny_index():
    """40 images, balanced labels, with a row column like the index artifact."""
    n = 40
    return pd.DataFrame({
        "row": np.arange(n),
        "image_id": [f"img-{i}" for i in range(n)],
        "label": np.tile([0, 1], n // 2).astype(np.int8),
        "patient_id": pd.Series([None] * n, dtype="string"),
    })


# ------------------------------------------------------------------ tiny DVC repos

def repo_env() -> dict[str, str]:
    """This environment's dvc and python first on PATH, a git identity, no analytics."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sh(repo, *args, check=True) -> subprocess.CompletedProcess:
    """Run a command in ``repo``; with ``check``, a failure shows the ends of its output."""
    proc = subprocess.run(args, cwd=repo, env=repo_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def edit_params(repo, **sections):
    path = Path(repo) / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def copy_repo(src: Path, dest: Path) -> Path:
    """A copy of a repo, its git history, DVC cache and outputs included (a few MB)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """The project's pipeline in a fresh git repo, tiny params committed, nothing run yet."""
    repo = tmp_path_factory.mktemp("tiny") / "repo"
    for item in REPO_FILES:
        src, dst = ROOT / item, repo / item
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    edit_params(repo, **TINY)
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "tiny biaslab")
    return repo


def _built_repo(tiny_repo: Path, folder: Path) -> tuple[Path, subprocess.CompletedProcess]:
    repo = copy_repo(tiny_repo, folder / "repo")
    proc = sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "first run")
    return repo, proc


@pytest.fixture(scope="session")
def built_repo(tiny_repo, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``tiny_repo`` after one full `dvc repro`, its results committed; and that repro.

    Read-only: tests that run anything in it work on a copy (``copy_repo``). Under pytest-xdist
    the first worker to ask builds it in the run's common temporary folder and the others wait
    for it and read it there, so the suite pays for this `dvc repro` (a minute) once, not once
    per worker.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _built_repo(tiny_repo, tmp_path_factory.mktemp("built"))
    # pytest-of-USER/pytest-N/: the parent of every worker's own basetemp in this run
    common = tmp_path_factory.getbasetemp().parent / "built"
    common.mkdir(exist_ok=True)
    done = common / "first-repro.json"
    with open(common / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its worker dies
        if not done.exists():
            # a folder of its own: a worker whose repro failed leaves its half-built repo and
            # no marker, and the next worker tries again (and fails the same way) from scratch
            repo, proc = _built_repo(tiny_repo, Path(tempfile.mkdtemp(dir=common)))
            done.write_text(json.dumps({"repo": str(repo), "args": proc.args,
                                        "returncode": proc.returncode, "stdout": proc.stdout,
                                        "stderr": proc.stderr}))
    first = json.loads(done.read_text())
    return Path(first.pop("repo")), subprocess.CompletedProcess(**first)
