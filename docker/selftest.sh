#!/usr/bin/env bash
# Inside the biaslab image: check the environment is the locked one, then run the whole
# pipeline on tiny params in a fresh git repo and check its artifacts and the DVC cache, then
# that a `docker stop` (SIGINT through tini) stops it cleanly.
# Used by docker/Dockerfile.test (at build time, in a copy of the repo).
set -euo pipefail
cd "${1:-/workspace}"

echo "selftest: $(id), python $(python --version 2>&1), $(dvc --version) in $(command -v dvc)"

# The image's environment is exactly uv.lock's (no dev group): uv says so, and torch is the pin.
uv sync --frozen --no-dev --no-install-project --check
python - <<'PY'
import importlib.metadata as md
import tomllib

with open("uv.lock", "rb") as f:
    locked = {p["name"]: p["version"] for p in tomllib.load(f)["package"]}
for name in ("torch", "torchvision", "dvc"):
    assert md.version(name) == locked[name], (name, md.version(name), locked[name])
    print(f"selftest: {name} {md.version(name)} as locked")
PY

# A fresh repo: the outputs of the host's runs are dropped, so everything is rebuilt here.
rm -rf .git dvc.lock data models reports metrics .dvc/cache .dvc/tmp
python - <<'PY'
import yaml

tiny = {"data": {"negative": [1], "positive": [7]}, "prepare": {"size": 12},
        "split": {"train_size": 0},
        "train": {"epochs": 2, "width": 4, "batch_size": 64, "seeds": [0]},
        "evaluate": {"n_boot": 50, "n_perm": 200},
        "explain": {"share_images": 16, "rotations": [0.0, 20.0], "noise": [0.0, 0.5]}}
with open("params.yaml") as f:
    params = yaml.safe_load(f)
for section, values in tiny.items():
    params[section].update(values)
with open("params.yaml", "w") as f:
    yaml.safe_dump(params, f, sort_keys=False)
PY
export GIT_AUTHOR_NAME=selftest GIT_AUTHOR_EMAIL=selftest@biaslab \
       GIT_COMMITTER_NAME=selftest GIT_COMMITTER_EMAIL=selftest@biaslab
git init -q
git add -A
git commit -qm "biaslab selftest"

dvc repro

for path in metrics/fairness.json metrics/grid.csv reports/index.html data/prepared/pixels.npy; do
    [[ -s $path ]] || { echo "selftest: $path is missing after dvc repro" >&2; exit 1; }
done
python -c "import json; h = json.load(open('metrics/fairness.json')); print('selftest: headline', sorted(h))"
# The cache went to the mounted volume (the image's DVC config), not into the repo.
[[ ! -e .dvc/cache ]] || { echo "selftest: DVC cache written into the repo" >&2; exit 1; }
[[ -n $(find /dvc-cache -type f -print -quit) ]] || { echo "selftest: /dvc-cache is empty" >&2; exit 1; }
dvc status --quiet  # everything up to date
echo "selftest: dvc repro OK in the image"

# `docker stop` as the image's STOPSIGNAL and ENTRYPOINT make it: SIGINT to tini while a stage
# runs (tini is not PID 1 here: -s makes it the subreaper). The stage stops with one line, DVC
# releases its locks, and the next `dvc repro` needs nothing else.
set -m  # job control: a background job that does not ignore SIGINT, as in a container
tini -s -g -- dvc repro -f -s train@none-0 > stop.log 2>&1 &
stopped=$!
set +m
until grep -q "Running stage 'train@none-0'" stop.log; do
    if ! kill -0 "$stopped" 2>/dev/null; then
        echo "selftest: dvc repro ended before its stage started:" >&2
        cat stop.log >&2
        exit 1
    fi
    sleep 0.2
done
sleep 1
kill -INT "$stopped"
status=0
wait "$stopped" || status=$?
if ((status == 0)) || ! grep -q "^train: interrupted (SIGINT" stop.log || grep -q Traceback stop.log; then
    echo "selftest: SIGINT did not stop dvc repro cleanly (exit $status):" >&2
    cat stop.log >&2
    exit 1
fi
python -c "import json; d = json.load(open('.dvc/tmp/rwlock')); assert not any(d.values()), d"
dvc repro --quiet
echo "selftest: SIGINT stops a stage with one line, and dvc repro starts again"
