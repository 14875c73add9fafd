"""The CUDA image, built and exercised for real: `make container-test`.

podman builds docker/Dockerfile on a local Debian base (no Docker engine, no registry needed),
then docker/Dockerfile.test, whose build runs `dvc repro` on tiny params in the image as a
non-root user, then stops a `dvc repro` as `docker stop` does (SIGINT through tini). It takes
minutes (about 7 the first time on a 2-core machine, under 1 once the base and the image are
cached), so it runs in CI (CI=true) or on request (BIASLAB_CONTAINER_TEST=1), and is skipped by
a developer's quick `make test`.
"""

import os
import subprocess

import pytest

from tests.conftest import ROOT

ENABLED = os.environ.get("CI") == "true" or os.environ.get("BIASLAB_CONTAINER_TEST") == "1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ENABLED, reason="builds the CUDA image with podman and runs dvc repro "
                       "in it (minutes): set BIASLAB_CONTAINER_TEST=1 (CI=true does)"),
]


def test_pipeline_runs_in_the_image():
    proc = subprocess.run(["make", "container-test"], cwd=ROOT, capture_output=True, text=True,
                          timeout=3600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "selftest: torch" in output and "as locked" in output
    assert "selftest: dvc repro OK in the image" in output
    assert "selftest: SIGINT stops a stage with one line, and dvc repro starts again" in output
    assert "container-test: passed" in output
