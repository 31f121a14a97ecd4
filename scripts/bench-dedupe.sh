#!/usr/bin/env bash
# Bench of the dedupe stage against a no-op forwarder on the same consumer loop: prints
# events/s of both, their ratio (goal >= 0.7) and Redis round trips per event (goal <= 0.05).
#
# Needs a running stack (scripts/stack.sh up) and its env, e.g.
#   source "${MAILPIPE_RUN_DIR:-.run}/env.sh"; scripts/bench-dedupe.sh
# DEDUPE_BENCH_EVENTS sets the number of distinct ids (default 100000; 30 % are sent twice).
# PROFILE=release measures an optimized build (the first such build takes several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MAILPIPE_KAFKA__BROKERS:?source the stack env (env.sh in the stack run directory) first}"
profile_flag=()
if [[ "${PROFILE:-debug}" == "release" ]]; then
    profile_flag=(--release)
fi
exec cargo test "${profile_flag[@]}" -p mailpipe-tests --test it -- dedupe_bench:: \
    --ignored --nocapture --test-threads=1
