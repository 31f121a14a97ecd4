#!/usr/bin/env bash
# Vendors the console page's chart library: installs exactly what package-lock.json pins
# (npm ci, no install scripts) and copies Chart.js's minified UMD build and the licenses of
# what that file bundles (Chart.js and @kurkle/color) into ../assets/vendor/, where the
# binary embeds them. The copies are committed, so building the console needs no npm; this
# script is the command that made them. Running it again must leave `git diff` empty.
#
#   bash crates/mailpipe-console/web/build.sh
set -euo pipefail

web_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vendor_dir="$web_dir/../assets/vendor"

cd "$web_dir"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

mkdir -p "$vendor_dir"
# The source map is left out on purpose (1 MB, only for a debugger); the file's trailing
# sourceMappingURL comment then points at nothing, which browsers ignore.
install -m 0644 node_modules/chart.js/dist/chart.umd.min.js "$vendor_dir/chart.umd.min.js"
install -m 0644 node_modules/chart.js/LICENSE.md "$vendor_dir/chart.js.LICENSE.md"
install -m 0644 node_modules/@kurkle/color/LICENSE.md "$vendor_dir/kurkle-color.LICENSE.md"

version="$(node -p 'require("./node_modules/chart.js/package.json").version')"
printf 'chart.umd.min.js: chart.js %s from the npm registry (pinned in web/package-lock.json)\n' \
    "$version" >"$vendor_dir/VERSION"
echo "vendored chart.js $version into $vendor_dir"
