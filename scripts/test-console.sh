#!/usr/bin/env bash
# scripts/test-console.sh — the console's browser test, part of `make test` (scripts/test.sh
# runs it with the test stack's services up and its env.sh sourced).
#
# Starts the pipeline's stages and the console on the test stack (default ports), sends
# known sample traffic (signed events from every provider, and forged/stale/malformed
# requests), waits until ClickHouse holds exactly the accepted events, then runs
# tests/browser/run.sh: headless Debian Chromium loads the console and checks the figures
# against ClickHouse, the chart, the drill-down, a forced alert (the dedupe stage stopped
# while traffic arrives, so its lag grows; started again, so it resolves) and the phone
# layout. Screenshots go to $ARTIFACTS_DIR (default <run dir>/browser). The stages are
# stopped again at the end, whatever happened.
#
# Environment: MAILPIPE_RUN_DIR (the test stack's run directory; required), CONSOLE_PORT
# (default 8090), CLICKHOUSE_HTTP_PORT (default 8123), CONSOLE_SAMPLES (default 600).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
: "${MAILPIPE_RUN_DIR:?set it to the run directory of the test stack}"
RUN_DIR=$(cd "$MAILPIPE_RUN_DIR" && pwd) # absolute: the browser test runs elsewhere
unset MAILPIPE_RUN_DIR # mailpipe reads every MAILPIPE_* variable as a setting
STACK=$REPO_ROOT/scripts/stack.sh
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mailpipe/target}
MAILPIPE_BIN=${STACK_BIN_DIR:-$CARGO_TARGET_DIR/debug}/mailpipe
CONSOLE_PORT=${CONSOLE_PORT:-8090}
CLICKHOUSE_HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-8123}
CONSOLE_SAMPLES=${CONSOLE_SAMPLES:-600}
ARTIFACTS_DIR=${ARTIFACTS_DIR:-$RUN_DIR/browser}
STAGES="sns-cert receiver verify normalize dedupe aggregate rules deliver console"

stack() { MAILPIPE_RUN_DIR=$RUN_DIR "$STACK" "$@"; }

# The console evaluates alerts every 2 s, and lag counts as growing from 1 message held for
# 10 s, so the forced alert shows within the test's patience.
export MAILPIPE_CONSOLE__ALERTS__INTERVAL_SECONDS=2
export MAILPIPE_CONSOLE__ALERTS__LAG_MIN=1
export MAILPIPE_CONSOLE__ALERTS__LAG_FOR_SECONDS=10

stop_stages() {
    # shellcheck disable=SC2086
    stack stop $STAGES >/dev/null || true
}
trap stop_stages EXIT

STACK_STAGES=$STAGES stack up

printf '\n==> sample traffic: %s signed events, 24 forged/stale/malformed requests\n' "$CONSOLE_SAMPLES"
"$MAILPIPE_BIN" send-samples --count "$CONSOLE_SAMPLES" --duplicates 0.05 \
    --summary-json "$RUN_DIR/console-samples.json"
"$MAILPIPE_BIN" send-samples --bad --count 24 --seed 3 \
    --summary-json "$RUN_DIR/console-samples-bad.json" || true
"$MAILPIPE_BIN" summary --expect "$RUN_DIR/console-samples.json" --wait 180

ready=0
for _ in $(seq 1 60); do
    if curl -fsS "http://127.0.0.1:$CONSOLE_PORT/readyz" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 1
done
((ready)) || {
    echo "the console did not become ready on port $CONSOLE_PORT; see $RUN_DIR/logs/console.log" >&2
    exit 1
}

printf '\n==> every stage answers /readyz\n'
curl -fsS "http://127.0.0.1:$CONSOLE_PORT/api/stages" | python3 -c '
import json, sys
stages = json.load(sys.stdin)["stages"]
for s in stages:
    print("  %-10s %-5s %s" % (s["stage"], "ready" if s["ready"] else "NOT", s["detail"]))
missing = [s["stage"] for s in stages if not s["ready"]]
sys.exit("not ready: " + ", ".join(missing) if missing else 0)
'

printf '\n==> browser test (tests/browser, headless Chromium)\n'
CONSOLE_URL="http://127.0.0.1:$CONSOLE_PORT" \
    CLICKHOUSE_URL="http://127.0.0.1:$CLICKHOUSE_HTTP_PORT" \
    CLICKHOUSE_DATABASE=mailpipe \
    ARTIFACTS_DIR="$ARTIFACTS_DIR" \
    STOP_STAGE_CMD="MAILPIPE_RUN_DIR=$RUN_DIR $STACK stop dedupe" \
    START_STAGE_CMD="MAILPIPE_RUN_DIR=$RUN_DIR STACK_STAGES=dedupe $STACK up" \
    SEND_TRAFFIC_CMD="cd $REPO_ROOT && $MAILPIPE_BIN send-samples --count 50 --seed \$(date +%s%N)" \
    EXPECT_ALERT=consumer_lag_growing \
    tests/browser/run.sh
printf '\nscreenshots: %s\n' "$ARTIFACTS_DIR"
