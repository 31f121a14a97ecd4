#!/usr/bin/env bash
# Runs the console's browser test (console.test.mjs; its top comment lists the environment it
# reads, all passed through). Installs its one npm dependency, playwright-core as pinned in
# package-lock.json, into tests/browser/node_modules when it is missing or the lockfile
# changed; never downloads a browser: it drives Debian's chromium (apt-get install chromium).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium_bin" ]]; then
    echo "tests/browser: no Chromium at $chromium_bin (apt-get install chromium, or set CHROMIUM)" >&2
    exit 1
fi

stamp=node_modules/.mailpipe-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" || ! -d node_modules/playwright-core ]]; then
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
fi

exec node --test --test-concurrency=1 --test-reporter=spec console.test.mjs
