#!/usr/bin/env bash
# Import a local stand-in for the CUDA base image, for builds that cannot reach a registry.
#
# The real base (docker/Dockerfile's BASE_IMAGE) is an Ubuntu image from Docker Hub; the container
# test builds on a Debian root filesystem made by debootstrap from Debian's mirror instead. The
# root filesystem is kept as a tarball under ~/.cache/biaslab/, keyed by the debootstrap
# arguments, so only the first run pays for debootstrap (a few minutes).
#
# Prints the name of the imported image (localhost/biaslab-base:KEY) on stdout.
set -euo pipefail

suite=bookworm
mirror=${BIASLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=python3,python3-venv,python3-pip,git,make,ca-certificates
args=(--variant=minbase "--include=$include" "$suite")

key=$(printf '%s\n' "${args[@]}" "$mirror" | sha256sum | cut -c1-12)
image=localhost/biaslab-base:$key
cache=${XDG_CACHE_HOME:-$HOME/.cache}/biaslab
tarball=$cache/rootfs-$suite-$key.tar

if podman image exists "$image"; then
    echo "$image"
    exit 0
fi

if [[ ! -f $tarball ]]; then
    echo "base: debootstrap ${args[*]} $mirror (once; cached in $tarball)" >&2
    mkdir -p "$cache"
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
