"""The container and the GPU workflow keep their contract.

Their linters (hadolint, check-jsonschema, actionlint) run in `make lint` (tools/lint.sh).
"""

import os
import stat
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOW = ROOT / ".github/workflows/gpu.yml"


def run(*args, **kwargs):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, **kwargs)


def test_dockerfile_contract():
    text = (ROOT / "docker/Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    base = next(line for line in lines if line.startswith("ARG BASE_IMAGE="))
    image, _, tag = base.removeprefix("ARG BASE_IMAGE=").partition(":")
    assert image and tag and tag != "latest", f"BASE_IMAGE must be a pinned tag: {base}"
    # The locked dependencies are installed before any of the code is copied.
    sync = next(i for i, line in enumerate(lines) if "uv sync --frozen" in line)
    copies = [line for line in lines[:sync] if line.startswith("COPY")]
    assert copies == ["COPY pyproject.toml uv.lock ./"]
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in {"root", "0"}
    assert lines[-1] == 'CMD ["dvc", "repro"]'
    assert "dir = /dvc-cache" in text
    # `docker stop` stops DVC and its stage as Ctrl-C does: tini passes SIGINT to the group
    assert 'ENTRYPOINT ["tini", "-g", "--"]' in lines and "STOPSIGNAL SIGINT" in lines


def fake_docker(tmp_path):
    """A `docker` that prints its arguments, one per line."""
    path = tmp_path / "docker"
    path.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize(
    ("command", "gpus", "expected_tail"),
    [([], "all", ["biaslab"]), (["dvc", "metrics", "diff", "main"], "all",
                                ["biaslab", "dvc", "metrics", "diff", "main"]),
     ([], "", ["biaslab"])],
)
def test_run_sh_runs_on_the_gpus_as_the_host_user_with_the_mounts(tmp_path, command, gpus,
                                                                  expected_tail):
    env = {**os.environ, "DOCKER": str(fake_docker(tmp_path)), "BIASLAB_GPUS": gpus,
           "BIASLAB_DVC_CACHE": str(tmp_path / "dvc-cache")}
    env.pop("BIASLAB_IMAGE", None)
    proc = run("docker/run.sh", *command, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    pairs = set(zip(args, args[1:], strict=False))
    assert args[0] == "run"
    assert ("--user", f"{os.getuid()}:{os.getgid()}") in pairs
    assert ("--volume", f"{ROOT}:/workspace") in pairs
    assert ("--volume", f"{tmp_path / 'dvc-cache'}:/dvc-cache") in pairs
    assert ("--workdir", "/workspace") in pairs
    assert (("--gpus", "all") in pairs) == bool(gpus)
    assert args[-len(expected_tail):] == expected_tail
    assert (tmp_path / "dvc-cache").is_dir()


def test_gpu_workflow_contract():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "gpu"]
    steps = job["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    scripts = "\n".join(s.get("run", "") for s in steps)
    for needle in ("docker build -f docker/Dockerfile", "dvc remote list",
                   "docker/run.sh dvc pull", "docker/run.sh dvc repro",
                   "docker/run.sh dvc metrics diff main"):
        assert needle in scripts, needle
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["uses"] == "actions/upload-artifact@v4"
    assert set(upload["with"]["path"].split()) == {"reports/", "metrics/"}
