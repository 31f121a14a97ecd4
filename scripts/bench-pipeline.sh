#!/usr/bin/env bash
# Bench of the whole pipeline: receiver and every stage as separate release processes fed by
# `mailpipe send-samples` (all twelve providers). Prints sustained events/s from the receiver
# to ClickHouse, the latency from the receiver taking a request to its rows being queryable
# (p50/p99), and each process's peak RSS (goal <= 64 MB per stage).
#
# Needs a running stack (scripts/stack.sh up) and its env, e.g.
#   source "${MAILPIPE_RUN_DIR:-.run}/env.sh"; scripts/bench-pipeline.sh
# PIPELINE_BENCH_EVENTS sets the number of events (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MAILPIPE_KAFKA__BROKERS:?source the stack env (env.sh in the stack run directory) first}"
# The bench starts the binaries next to its own (release) test executable.
cargo build -q --release --workspace --bins
exec cargo test -q --release -p mailpipe-tests --test pipeline_bench -- \
    --ignored --nocapture --test-threads=1
