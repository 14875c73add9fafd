#!/usr/bin/env bash
# Run a command in the biaslab image on this repo, on the host's GPUs. Default: `dvc repro`.
#
#   docker/run.sh                              # dvc repro
#   docker/run.sh dvc exp run -S train.model=resnet34 -S train.device=cuda
#   docker/run.sh dvc metrics diff main
#
# The repo is mounted at /workspace (the working directory), the DVC cache at /dvc-cache, and
# the command runs as the host user (--user uid:gid), so what it writes belongs to you.
# Environment:
#   BIASLAB_IMAGE        image to run (default biaslab, as built by `make image`)
#   BIASLAB_DVC_CACHE    host folder of the DVC cache (default ~/.cache/biaslab/dvc-cache)
#   BIASLAB_GPUS         value of --gpus (default all; empty: no GPU, CPU only)
#   BIASLAB_DOCKER_ARGS  extra `docker run` arguments, e.g. "-e AWS_PROFILE" for a DVC remote
#   DOCKER               container CLI (default docker)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
image=${BIASLAB_IMAGE:-biaslab}
cache=${BIASLAB_DVC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/biaslab/dvc-cache}
gpus=${BIASLAB_GPUS-all}
mkdir -p "$cache"

args=(run --rm
      --user "$(id -u):$(id -g)"
      --volume "$repo:/workspace"
      --volume "$cache:/dvc-cache"
      --workdir /workspace
      --shm-size 8g)  # DataLoader workers share batches through /dev/shm
[[ -z $gpus ]] || args+=(--gpus "$gpus")
[[ ! -t 0 || ! -t 1 ]] || args+=(--interactive --tty)
# shellcheck disable=SC2206  # word splitting of the extra arguments is intended
[[ -z ${BIASLAB_DOCKER_ARGS:-} ]] || args+=($BIASLAB_DOCKER_ARGS)

exec "${DOCKER:-docker}" "${args[@]}" "$image" "$@"
