"""The commands of the README and the docs, run as written (tests/doc_blocks.py: how a block
says whether it is run, checked or exempted, and why).

The blocks are read from the pages when the tests run, so a changed page is tested as it is
now. Each ``test_block_NAME`` runs the block(s) marked ``<!-- doctest: run NAME -->`` with bash
(``set -euo pipefail``) in a fresh copy of this working tree: its tracked and untracked files
(not the ignored ones: no pipeline outputs, no DVC cache), committed to a new Git repository,
with this environment as its ``.venv`` (its ``bin`` first on PATH, as after ``source
.venv/bin/activate``) and the shared data folder beside it as ``../shared`` when there is one.
The default task runs at its defaults: a change of a default that breaks a documented command
fails here.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, SHARED, copy_repo, repo_env, sh
from tests.doc_blocks import Block, blocks_of, documented_blocks, parse_comment, problems

VENV = Path(sys.executable).parent.parent  # this environment: the copies' .venv
TIMEOUT = 1800  # seconds for one block (a busy 2-core machine; they take one to three minutes)
NO_SHARED = f"needs the shared data folder beside the repository ({SHARED} is absent)"


def scenarios() -> set[str]:
    """The NAMEs this module runs: one ``test_block_NAME`` each."""
    return {name.removeprefix("test_block_").replace("_", "-") for name in globals()
            if name.startswith("test_block_")}


def blocks_named(name: str) -> list[Block]:
    found = [block for block in documented_blocks(ROOT) if block.name == name]
    assert found, f"no block is marked `<!-- doctest: run {name} -->` any more"
    return found


# ------------------------------------------------------------------ every block is accounted for

def test_every_shell_block_is_run_checked_or_exempted_with_its_reason():
    blocks = documented_blocks(ROOT)
    assert problems(blocks) == []
    run = [block for block in blocks if block.kind == "run"]
    assert {block.name for block in run} == scenarios()  # no block without its test, nor back
    for block in run:
        block.script()  # a `; skip "LINE"` that names a line the block lacks is stale


PAGE = """\
# a page

<!-- doctest: run first -->
```bash
make repro   # the pipeline
make test \\
  -k x       # continued
```

```bash
biaslab new-command
```

```
a diagram
```

<!-- doctest: skip (a diagram) -->
```mermaid
flowchart LR
```

<!-- doctest: run first; skip "make repro" (the suite runs it) -->
```sh
make repro
make test
```
"""


def test_a_block_without_a_comment_or_a_language_is_caught():
    blocks = blocks_of(PAGE, "page.md")
    assert [(b.line, b.lang, b.kind) for b in blocks] == [
        (4, "bash", "run"), (10, "bash", ""), (14, "", ""), (19, "mermaid", "skip"),
        (24, "sh", "run")]
    assert blocks[0].commands() == ["make repro", "make test    -k x"]
    assert problems(blocks) == [
        "page.md:10: a bash block without a doctest comment (tests/doc_blocks.py says which)",
        "page.md:14: a fence without a language (bash, text, ...)",
        "page.md:19: a doctest comment on a mermaid block",
        "run first: page.md:4, page.md:24 hold different commands"]
    assert blocks[4].skipped == {"make repro": "the suite runs it"}
    assert blocks[4].script() == "make test\n"


def test_a_malformed_or_stale_comment_is_caught():
    with pytest.raises(ValueError, match="page.md:1: doctest comment 'skip': expected"):
        blocks_of("<!-- doctest: skip -->\n```bash\nls\n```\n", "page.md")
    with pytest.raises(ValueError, match="never closed"):
        blocks_of("```bash\nls\n", "page.md")
    assert parse_comment("check (a cluster)") == {"kind": "check", "reason": "a cluster"}
    # in a list item the comment ends the line before the fence (a line of its own would end
    # the item); the block is indented like the item
    item = blocks_of("1. Push.  <!-- doctest: skip (a server) -->\n   ```bash\n   git push\n"
                     "   ```\n", "page.md")[0]
    assert (item.kind, item.reason, item.commands()) == ("skip", "a server", ["git push"])
    stale = blocks_of('<!-- doctest: run a; skip "rm -rf x" (why) -->\n```bash\nls\n```\n',
                      "page.md")[0]
    with pytest.raises(ValueError, match=r"page.md:2: .* skips \['rm -rf x'\]"):
        stale.script()


# ------------------------------------------------------------------ check: parsed, not run

def check_blocks() -> list[Block]:
    try:
        return [block for block in documented_blocks(ROOT) if block.kind == "check"]
    except ValueError:  # a malformed comment: the test above says which
        return []


class Planned(Exception):
    """Raised where the sweep would start its experiments."""


def check(block: Block, monkeypatch) -> None:
    """Parse each command of ``block`` with biaslab's parser; plan a sweep, as it plans before
    queueing anything (every experiment's settings validated), and stop there."""
    from biaslab.cli import sweep as sweep_command
    from biaslab.cli.main import parser

    def planned(experiments, *args, **kwargs):
        raise Planned(experiments)

    monkeypatch.setattr(sweep_command, "run_experiments", planned)
    monkeypatch.chdir(ROOT)  # the sweep reads params.yaml and dvc.yaml where it runs
    for command in block.commands():
        argv = shlex.split(command)
        assert argv[0] == "biaslab", f"{block.where}: only biaslab commands can be checked"
        try:
            args = parser(argv[1]).parse_args(argv[1:])
        except SystemExit as exc:
            raise AssertionError(f"{block.where}: `{command}` does not parse") from exc
        if args.command == "sweep":
            with pytest.raises(Planned) as plan:
                sweep_command.sweep(args)
            assert plan.value.args[0], f"{block.where}: `{command}` plans no experiment"


@pytest.mark.parametrize("block", check_blocks(), ids=lambda block: block.where)
def test_checked_blocks_parse_and_their_sweeps_plan(block, monkeypatch):
    check(block, monkeypatch)


@pytest.mark.parametrize("command, says", [
    ("biaslab sweep --valuez 0 0.2", "does not parse"),
    ("biaslab train --datadir d --csv t.csv --epochs many", "does not parse"),
    ("biaslab sweep --set train.epochs=-1", "train.epochs"),
    ("dvc exp show", "only biaslab commands"),
])
def test_a_checked_command_that_went_stale_fails(command, says, monkeypatch):
    block = blocks_of(f"<!-- doctest: check (x) -->\n```bash\n{command}\n```\n", "page.md")[0]
    with pytest.raises((AssertionError, ValueError), match=says):
        check(block, monkeypatch)


# ------------------------------------------------------------------ run: as written

def fresh_copy(parent: Path) -> Path:
    """``parent/repo``: a fresh clone of this working tree (see the module's docstring)."""
    repo = parent / "repo"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
    for rel in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / rel).is_file():  # not one deleted but still in the index
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    (repo / ".venv").symlink_to(VENV)
    if (ROOT / ".uv").is_dir():
        (repo / ".uv").symlink_to(ROOT / ".uv")
    if SHARED.is_dir():
        (parent / "shared").symlink_to(SHARED)
    sh(repo, "git", "init", "-q")
    with open(repo / ".git/info/exclude", "a") as exclude:
        exclude.write("/.venv\n/.uv\n")  # links: the .gitignore's /.venv/ matches folders only
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "a fresh clone")
    return repo


def copy_of(repo: str | Path, parent: Path) -> Path:
    """A copy of a fresh copy, ``../shared`` beside it again."""
    if SHARED.is_dir():
        (parent / "shared").symlink_to(SHARED)
    return copy_repo(Path(repo), parent / "repo")


def run_block(block: Block, repo: Path, wrap: tuple[str, ...] = (),
              env: dict | None = None) -> dict:
    """Run ``block`` with bash in ``repo`` (under the command ``wrap``, if any): its return
    code, output and seconds. The script lies outside the repo, which it leaves clean."""
    script = repo.parent / f"block-{block.line}.sh"
    script.write_text("set -euo pipefail\n" + block.script())
    env = {**repo_env(), **(env or {})}
    env["PATH"] = f"{repo / '.venv/bin'}{os.pathsep}{env['PATH']}"
    env.pop("VIRTUAL_ENV", None)
    start, cpu = time.monotonic(), _children_cpu()
    proc = subprocess.run([*wrap, "bash", str(script)], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    seconds, cpu = time.monotonic() - start, _children_cpu() - cpu
    # the CPU time too: on a shared machine it says more of what the block costs than the wall
    # time (daemons it leaves, such as Ray's, are not counted)
    print(f"{block.where}: {seconds:.0f} s, {cpu:.0f} CPU-s, exit status {proc.returncode}")
    return {"where": block.where, "returncode": proc.returncode, "stdout": proc.stdout,
            "stderr": proc.stderr, "seconds": seconds, "cpu_seconds": cpu}


def _children_cpu() -> float:
    """User and system seconds of every ended child process of this one, and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def assert_ran(result: dict) -> None:
    assert result["returncode"] == 0, (
        f"{result['where']} failed ({result['returncode']}):\n{result['stdout'][-3000:]}\n"
        f"{result['stderr'][-3000:]}")


def the_block(name: str) -> Block:
    """The block marked ``run name`` (blocks that share it hold the same commands)."""
    return blocks_named(name)[0]


def once_per_run(tmp_path_factory, name: str, build) -> dict:
    """``build(folder)`` (a JSON-able dict) once per test run: under pytest-xdist, the first
    worker to ask builds it under a file lock in the run's common temporary folder, the others
    wait and read it (as ``built_repo`` in conftest)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    common = tmp_path_factory.getbasetemp().parent / name
    common.mkdir(exist_ok=True)
    done = common / "done.json"
    with open(common / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            done.write_text(json.dumps(build(Path(tempfile.mkdtemp(dir=common)))))
    return json.loads(done.read_text())


def make_repro_copy(folder: Path) -> dict:
    """A fresh copy after the two commands' block (``make repro``), and how that went."""
    synced, uv = VENV / ".synced", ROOT / ".uv/bin/uv"
    if not (synced.is_file() and uv.is_file()):
        pytest.skip("`make repro` needs the environment as `make env` made it (.venv/.synced, "
                    ".uv/bin/uv): run the suite with `make test`")
    repo = fresh_copy(folder)
    # the copy's environment is this one, made from these files: older than its .synced, make
    # does not sync it again (which would install the copy's biaslab into it)
    before = synced.stat().st_mtime - 60
    for name in ("pyproject.toml", "uv.lock"):
        os.utime(repo / name, (before, before))
    plan = sh(repo, "make", "-n", "repro").stdout
    assert "sync" not in plan, f"make would sync this environment again:\n{plan}"
    return {"repo": str(repo), **run_block(the_block("two-commands"), repo)}


def run_after_repro(name: str, reproduced: dict, tmp_path: Path) -> tuple[Path, dict]:
    """The block ``name`` run, and checked to have run, in a copy of the repo after the two
    commands' ``make repro`` (which must have run too): the copy, and how the block went."""
    assert_ran(reproduced)
    repo = copy_of(reproduced["repo"], tmp_path)
    result = run_block(the_block(name), repo)
    assert_ran(result)
    return repo, result


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> dict:
    return once_per_run(tmp_path_factory, "make-repro", make_repro_copy)


@pytest.mark.slow
def test_block_two_commands(reproduced):
    assert_ran(reproduced)
    repo = Path(reproduced["repo"])
    for output in ("metrics/fairness.json", "metrics/grid.csv", "reports/index.html"):
        assert f"{repo / output}" in reproduced["stdout"]  # where it says they are
        assert (repo / output).is_file()


@pytest.mark.slow
def test_block_experiments(reproduced, tmp_path):
    repo, result = run_after_repro("experiments", reproduced, tmp_path)
    assert "Running stage 'prepare'" not in result["stdout"]  # "never prepare"
    assert (repo / "dvc_plots/index.html").is_file()


@pytest.mark.slow
def test_block_exp_show(reproduced, tmp_path):
    _, result = run_after_repro("exp-show", reproduced, tmp_path)
    assert "verdict" in result["stdout"]


@pytest.mark.slow
def test_block_audit_pipeline(reproduced, tmp_path):
    repo, result = run_after_repro("audit-pipeline", reproduced, tmp_path)
    assert "recommended none/" in result["stdout"] and "verdict" in result["stdout"]
    for name in ("grid.csv", "groups.csv", "fairness.json", "verdict.json", "report.html"):
        assert (repo / "audit" / name).is_file()


@pytest.mark.slow
def test_block_audit_black_box(tmp_path):
    repo = fresh_copy(tmp_path)
    result = run_block(the_block("audit-black-box"), repo)
    assert_ran(result)
    # what the page says of it: the decisions miss women's positives, and the verdict fails
    verdict = json.loads((repo / "vendor/verdict.json").read_text())
    assert "failed" in json.dumps(verdict) and "equal_opportunity" in json.dumps(verdict)


@pytest.mark.slow
def test_block_audit_compare(tmp_path):
    repo = fresh_copy(tmp_path)
    result = run_block(the_block("audit-compare"), repo)
    assert_ran(result)
    # what the page says of it: with the fixed threshold the mitigated model is the fairer on
    # equal opportunity, and the data can tell; after equalized_odds they do not differ
    rows = pd.read_csv(repo / "compared/compare.csv").set_index(["method", "figure"])
    fixed = rows.loc[("fixed", "sex.equal_opportunity_difference")]
    assert fixed["fairer"] == "mitigated" and fixed["tells"] and fixed["difference_lo"] > 0.1
    assert not rows.loc[("equalized_odds", "sex.equal_opportunity_difference"), "tells"]
    assert "baseline against mitigated" in (repo / "compared/report.html").read_text()


@pytest.mark.slow
def test_block_audit_model_file(tmp_path):
    repo = fresh_copy(tmp_path)
    assert_ran(run_block(the_block("audit-model-file"), repo))
    # what the page says of it: every scan of site A flagged, none of site B's negatives, and
    # the maps in the report
    groups = pd.read_csv(repo / "scan_audit/groups.csv")
    fpr = groups[(groups["method"] == "fixed") & (groups["set"] == "test")].set_index("group")
    assert fpr.loc["site=A", "fpr"] > 0.9 and fpr.loc["site=B", "fpr"] < 0.1
    assert "Attribution maps" in (repo / "scan_audit/report.html").read_text()


@pytest.mark.slow
def test_block_audit_init(tmp_path):
    result = run_block(the_block("audit-init"), fresh_copy(tmp_path))
    assert_ran(result)
    # what the page says: repro runs the three stages, the first experiment evaluate and
    # report, the second the report alone
    ran = re.findall(r"Running stage '(\w+)'", result["stdout"] + result["stderr"])
    assert ran == ["postprocess", "evaluate", "report", "evaluate", "report", "report"]
    project = tmp_path / "scores-audit"
    assert (project / "report.html").is_file() and (project / "metrics/verdict.json").is_file()
    assert "report.min_class_size" in result["stdout"]  # exp show's table


@pytest.mark.slow
def test_block_recover(tmp_path):
    assert_ran(run_block(the_block("recover"), fresh_copy(tmp_path)))


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason=NO_SHARED)
def test_block_real_xrays(tmp_path):
    assert_ran(run_block(the_block("real-xrays"), fresh_copy(tmp_path)))


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason=NO_SHARED)
def test_block_findings_nih(tmp_path):
    repo = fresh_copy(tmp_path)
    assert_ran(run_block(the_block("findings-nih"), repo))
    # what the page says of it: every finding evaluated, the Findings section in the report
    grid = pd.read_csv(repo / "metrics/grid.csv")
    assert grid.columns[0] == "finding" and grid["finding"].nunique() >= 14
    page = (repo / "reports/index.html").read_text()
    assert 'id="findings"' in page and "underdiagnosis" in page.lower()


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason=NO_SHARED)
def test_block_train_predict(tmp_path):
    repo = fresh_copy(tmp_path)
    assert_ran(run_block(the_block("train-predict"), repo))
    scores = (repo / "runs/a/scores.csv").read_text().splitlines()
    metadata = (SHARED / "data/cxr_sample/metadata.csv").read_text().splitlines()
    assert len(scores) == len(metadata)  # a score for every image, under one header


def isolation() -> tuple[str, ...]:
    """A command that runs another in its own process, mount and network namespaces (its own
    loopback): the walk-through's `ray stop` stops every Ray process it can see, and its port
    6379 is fixed; neither may reach another Ray on the machine. ``()`` where it cannot."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return ()
    wrap = ("unshare", *(() if os.geteuid() == 0 else ("--map-root-user",)), "--pid", "--fork",
            "--kill-child", "--mount-proc", "--net", "sh", "-c", 'ip link set lo up && exec "$@"',
            "sh")
    probe = subprocess.run([*wrap, "true"], capture_output=True)
    return wrap if probe.returncode == 0 else ()


@pytest.mark.slow
def test_block_ray_one_machine(tmp_path):
    wrap = isolation()
    if not wrap:
        pytest.skip("needs unshare and ip, and namespaces: the walk-through's `ray stop` would "
                    "stop every Ray process on the machine")
    repo = fresh_copy(tmp_path)
    # Ray's sockets live under TMPDIR: a short path (a socket's is at most 107 characters)
    scratch = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    try:
        result = run_block(the_block("ray-one-machine"), repo, wrap, env={"TMPDIR": scratch})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert_ran(result)
    done = re.search(r"sweep: (\d+) of (\d+) experiments succeeded", result["stdout"])
    assert done and done[1] == done[2] != "0", result["stdout"][-3000:]
