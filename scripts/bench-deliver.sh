#!/usr/bin/env bash
# Bench of the deliver stage (issue 19): deliveries/s to 64 local sinks from a backlog, and
# the latency the stage adds at a steady rate (p50/p99, from the action on mail.actions to
# the request at its target). Figures only, nothing about speed is asserted.
#
# Needs a running stack (scripts/stack.sh up) and its env, e.g.
#   source "${MAILPIPE_RUN_DIR:-.run}/env.sh"; scripts/bench-deliver.sh
# Environment (all optional): DELIVER_BENCH_DELIVERIES (backlog, default 20000),
# DELIVER_BENCH_RATE (steady phase, default 500/s), DELIVER_BENCH_SECONDS (default 20),
# PROFILE=release for an optimized build.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MAILPIPE_KAFKA__BROKERS:?source the stack env (env.sh in the stack run directory) first}"
unset MAILPIPE_RUN_DIR
profile_flag=()
if [[ "${PROFILE:-debug}" == "release" ]]; then
    profile_flag=(--release)
fi
exec cargo test -q "${profile_flag[@]}" -p mailpipe-stage-7-deliver --test bench -- \
    --ignored --nocapture
