#!/usr/bin/env bash
# Bench of the aggregate stage: rows/s into ClickHouse through the stage next to a plain bulk
# insert of the same rows (goal ratio >= 0.5), and the latency from mail.events.unique to
# queryable at a steady rate (goal p99 <= 2 s at 5,000 events/s).
#
# Needs a running stack (scripts/stack.sh up) and its env, e.g.
#   source "${MAILPIPE_RUN_DIR:-.run}/env.sh"; scripts/bench-aggregate.sh
# AGG_BENCH_EVENTS (default 200000 per round), AGG_BENCH_ROUNDS (3), AGG_BENCH_RATE
# (5000/s), AGG_BENCH_SECONDS (10).
# PROFILE=release measures an optimized build (the first such build takes several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MAILPIPE_KAFKA__BROKERS:?source the stack env (env.sh in the stack run directory) first}"
profile_flag=()
if [[ "${PROFILE:-debug}" == "release" ]]; then
    profile_flag=(--release)
fi
exec cargo test "${profile_flag[@]}" -p mailpipe-tests --test it -- aggregate_bench:: \
    --ignored --nocapture --test-threads=1
