#!/usr/bin/env bash
# Import a local stand-in for the CUDA base image, for builds that cannot reach a registry.
#
# The real base (docker/Dockerfile's BASE_IMAGE) is an Ubuntu image from Docker Hub; the container
# test builds on a Debian root filesystem made by debootstrap from Debian's mirror instead. The
# root filesystem is kept as a tarball under ~/.cache/biaslab/, keyed by the debootstrap
# arguments, so only the first run pays for debootstrap (a few minutes).
#
# The packages docker/Dockerfile's apt-get installs are installed here already, so that its
# apt-get only updates the lists: the base is made in the background while CI lints (.ci/run),
# off the test's critical path. ca-certificates has to be here anyway: the build mounts the
# host's CA bundle over the package's file, which its post-install script fails to replace.
#
# Several at once (.ci/run starts one early, in the background) make the base once: the others
# wait for it. Prints the name of the imported image (localhost/biaslab-base:KEY) on stdout.
set -euo pipefail

suite=bookworm
mirror=${BIASLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=ca-certificates,gcc,git,libc6-dev,python3,python3-dev,python3-venv,tini
args=(--variant=minbase "--include=$include" "$suite")

key=$(printf '%s\n' "${args[@]}" "$mirror" | sha256sum | cut -c1-12)
image=localhost/biaslab-base:$key
cache=${XDG_CACHE_HOME:-$HOME/.cache}/biaslab
tarball=$cache/rootfs-$suite-$key.tar

mkdir -p "$cache"
exec 9>"$cache/base-$key.lock"
flock 9  # released when this script exits

if podman image exists "$image"; then
    echo "$image"
    exit 0
fi

if [[ ! -f $tarball ]]; then
    echo "base: debootstrap ${args[*]} $mirror (once; cached in $tarball)" >&2
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs" "$tarball.partial"' EXIT
    debootstrap "${args[@]}" "$rootfs" "$mirror" >&2
    # apt's lists and downloaded .debs are not part of the image.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" --numeric-owner -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"  # only a complete tarball is ever reused
fi

echo "base: podman import $tarball" >&2
podman import --quiet "$tarball" "$image" >/dev/null
echo "$image"
