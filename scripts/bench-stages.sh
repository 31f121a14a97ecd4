#!/usr/bin/env bash
# Bench of the cost of exactly-once per stage (issue 16): the verify, normalize and dedupe
# release binaries each work through the same pre-filled input with kafka.exactly_once off
# and on (tests/tests/it/stage_bench.rs); prints input records/s of both and the ratio on/off
# (goal >= 0.8) as a Markdown table. Figures only, nothing is asserted.
#
# Needs a running stack (scripts/stack.sh up) and its env, e.g.
#   source "${MAILPIPE_RUN_DIR:-.run}/env.sh"; scripts/bench-stages.sh
# Environment (all optional): STAGE_BENCH_EVENTS (events planned, default 100000),
# STAGE_BENCH_ROUNDS (runs per mode, alternating, default 2), STAGE_BENCH_STAGES
# (default verify,normalize,dedupe).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MAILPIPE_KAFKA__BROKERS:?source the stack env (env.sh in the stack run directory) first}"
# mailpipe reads every MAILPIPE_* variable as a setting; the run directory is not one.
unset MAILPIPE_RUN_DIR

# The bench starts the stage binaries next to its own (release) test executable.
cargo build -q --release --workspace --bins
exec cargo test -q --release -p mailpipe-tests --test it -- stage_bench:: \
    --ignored --nocapture --test-threads=1
