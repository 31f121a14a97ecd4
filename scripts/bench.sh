#!/usr/bin/env bash
# scripts/bench.sh — `make bench`: the benchmarks that report figures (never assert them),
# one after the other, in release builds. Each prints its own table.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

# The benches that need the stack get one of their own (run directory .run/bench, fresh
# data, no stages: each bench starts what it measures), stopped on exit. With a stack
# already in the environment (MAILPIPE_KAFKA__BROKERS set, e.g. after `source
# .run/env.sh`), that one is used instead.
if [[ -z ${MAILPIPE_KAFKA__BROKERS:-} ]]; then
    export BENCH_RUN_DIR=$REPO_ROOT/.run/bench
    bench_stack() { MAILPIPE_RUN_DIR=$BENCH_RUN_DIR STACK_STAGES= scripts/stack.sh "$@"; }
    trap 'bench_stack down >/dev/null || true' EXIT
    rm -rf "$BENCH_RUN_DIR/data"
    bench_stack up
    # shellcheck disable=SC1091
    source "$BENCH_RUN_DIR/env.sh"
fi
unset MAILPIPE_RUN_DIR

echo "==> normalize: parse + enrich + Avro encode per provider (one core)"
cargo bench -q -p mailpipe-stage-3-normalize --bench parse_encode

echo
echo "==> enrichment: user agents classified per second (one core)"
cargo bench -q -p mailpipe-enrich --bench classify

echo
echo "==> verify: verifications per second per provider (one core)"
cargo bench -q -p mailpipe-verify-core --features testing

if [[ -x scripts/bench-receiver.sh ]]; then
    echo
    echo "==> receiver: durable produce vs a bare axum handler"
    scripts/bench-receiver.sh
fi

if [[ -x scripts/bench-dedupe.sh ]]; then
    echo
    echo "==> dedupe: events/s through the stage vs a no-op forwarder, Redis round trips"
    PROFILE=release scripts/bench-dedupe.sh
fi

if [[ -x scripts/bench-rules.sh ]]; then
    echo
    echo "==> rules: events/s through the stage with 100 rules vs a no-op forwarder"
    PROFILE=release scripts/bench-rules.sh
fi

if [[ -x scripts/bench-stages.sh ]]; then
    echo
    echo "==> exactly-once cost: verify, normalize, dedupe with kafka.exactly_once off vs on"
    scripts/bench-stages.sh
fi

if [[ -x scripts/bench-aggregate.sh ]]; then
    echo
    echo "==> aggregate: rows/s through the stage vs a plain bulk insert; latency to queryable"
    PROFILE=release scripts/bench-aggregate.sh
fi

if [[ -x scripts/bench-deliver.sh ]]; then
    echo
    echo "==> deliver: deliveries/s to 64 local targets, added latency p50/p99"
    PROFILE=release scripts/bench-deliver.sh
fi

if [[ -x scripts/bench-pipeline.sh ]]; then
    echo
    echo "==> whole pipeline (exactly_once on): events/s receiver -> ClickHouse, latency, peak RSS per process"
    scripts/bench-pipeline.sh
fi
