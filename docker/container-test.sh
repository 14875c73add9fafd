#!/usr/bin/env bash
# Build the biaslab image for real and run the pipeline inside it: `make container-test`.
#
# Needs no Docker engine and no registry: podman builds docker/Dockerfile (chroot isolation, no
# daemon) on a Debian base made by debootstrap (docker/base-image.sh), then docker/Dockerfile.test
# on top, whose build runs `dvc repro` on tiny params as a non-root user (docker/selftest.sh).
# The host's uv cache is mounted into the build, so the locked wheels (torch's are ~6 GB) are
# downloaded once for the host's .venv and the image alike.
#
# Installs podman and debootstrap with apt when they are missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in podman debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        echo "container-test: needs ${missing[*]}; install them (e.g. apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "container-test: apt-get install ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

started=$SECONDS
base=$(docker/base-image.sh)
echo "container-test: base image $base ($((SECONDS - started)) s)"

# uv's cache: the one the host's .venv was built from, when there is one.
if [[ -x .uv/bin/uv ]]; then
    uv_cache=$(.uv/bin/uv cache dir)
else
    uv_cache=${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}
fi
mkdir -p "$uv_cache"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
build=(podman build --isolation chroot --format docker)  # docker format: keeps SHELL

# Images these tags name now: replaced by this run's, they are removed at the end.
old_ids=$(podman image inspect --format '{{.Id}}' localhost/biaslab:test localhost/biaslab:selftest \
          2>/dev/null || true)

step=$SECONDS
"${build[@]}" -f docker/Dockerfile -t localhost/biaslab:test \
    --build-arg "BASE_IMAGE=$base" --build-arg UV_CACHE_DIR=/uv-cache \
    -v "$uv_cache:/uv-cache" -v "$ca_bundle:$ca_bundle:ro" .
echo "container-test: image built ($((SECONDS - step)) s)"

# --no-cache: the pipeline runs every time, not only when the code changed; --layers=false:
# no intermediate images are kept for it.
step=$SECONDS
"${build[@]}" --no-cache --layers=false -f docker/Dockerfile.test -t localhost/biaslab:selftest \
    --build-arg IMAGE=localhost/biaslab:test .
echo "container-test: dvc repro in the image OK ($((SECONDS - step)) s)"

new_ids=$(podman image inspect --format '{{.Id}}' localhost/biaslab:test localhost/biaslab:selftest)
for id in $old_ids; do
    if ! grep -qx "$id" <<<"$new_ids"; then
        podman rmi "$id" >/dev/null 2>&1 || true  # refused while a newer image builds on it
    fi
done
echo "container-test: passed in $((SECONDS - started)) s"
