#!/usr/bin/env bash
# scripts/bench.sh — `make bench`: the benchmarks that report figures (never assert them),
# one after the other, in release builds. Each prints its own table.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

echo "==> normalize: parse + Avro encode per provider (one core)"
cargo bench -q -p mailpipe-normalize-stage --bench parse_encode

echo
echo "==> verify: verifications per second per provider (one core)"
cargo bench -q -p mailpipe-verify --features testing

if [[ -x scripts/bench-receiver.sh ]]; then
    echo
    echo "==> receiver: durable produce vs a bare axum handler"
    scripts/bench-receiver.sh
fi

if [[ -x scripts/bench-dedupe.sh ]]; then
    echo
    echo "==> dedupe: events/s through the stage vs a no-op forwarder, Redis round trips"
    scripts/bench-dedupe.sh
fi
