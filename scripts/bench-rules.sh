#!/usr/bin/env bash
# Bench of the rules stage with 100 rules (mixed conditions, 10 thresholds) against a no-op
# forwarder on the same consumer loop and input: prints events/s of both, their ratio
# (goal >= 0.5), the actions, suppressions and published records written, Redis round
# trips per event, and each one's process CPU per 1,000 events. Figures only; nothing is
# asserted.
#
# Needs a running stack (scripts/stack.sh up) and its env, e.g.
#   source "${MAILPIPE_RUN_DIR:-.run}/env.sh"; scripts/bench-rules.sh
# RULES_BENCH_EVENTS sets the number of events (default 50000), RULES_BENCH_ROUNDS the rounds
# (default 3; the two take turns, each figure is the median of its runs).
# PROFILE=release measures an optimized build (the first such build takes several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MAILPIPE_KAFKA__BROKERS:?source the stack env (env.sh in the stack run directory) first}"
profile_flag=()
if [[ "${PROFILE:-debug}" == "release" ]]; then
    profile_flag=(--release)
fi
exec cargo test "${profile_flag[@]}" -p mailpipe-tests --test it -- rules_bench:: \
    --ignored --nocapture --test-threads=1
