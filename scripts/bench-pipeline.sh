#!/usr/bin/env bash
# Bench of the whole pipeline: receiver and every stage as separate release processes fed by
# `mailpipe send-samples` (all twelve providers), in two phases, each on fresh topics and a
# fresh database (tests/tests/it/pipeline_bench.rs):
#   1. capacity: sustained events/s from the receiver to ClickHouse, posting as fast as it
#      can (goal >= 5,000 events/s);
#   2. fixed load: latency from the receiver taking a request to its rows being queryable
#      (p50/p99/max) and events/s achieved at a steady offered rate (goal p99 <= 2 s);
# plus, per phase, every process's peak RSS (goal <= 64 MB per stage), the broker's and
# ClickHouse's RSS, each consumer stage's lag over time and every process's CPU time.
# The stages run with kafka.exactly_once on (the default); each phase prints the Kafka
# transactions each stage committed. Markdown tables.
#
# Needs a running stack (scripts/stack.sh up) and its env, e.g.
#   source "${MAILPIPE_RUN_DIR:-.run}/env.sh"; scripts/bench-pipeline.sh
# Environment (all optional):
#   PIPELINE_BENCH_EVENTS    events of the capacity phase         (default 60000)
#   PIPELINE_BENCH_RATE      events/s offered in the fixed phase  (default 5000)
#   PIPELINE_BENCH_SECONDS   duration of the fixed phase          (default 30)
#   PIPELINE_BENCH_EXACTLY_ONCE
#                            false: the stages' at-least-once path (default true)
#   BENCH_RUN_DIR, MAILPIPE_RUN_DIR
#                            the stack's run directory, to find the broker's and
#                            ClickHouse's pids (else .run/bench, then .run)
#   PIPELINE_BENCH_SERVICE_PIDS
#                            "kafka=PID clickhouse=PID": given, skips the search above
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MAILPIPE_KAFKA__BROKERS:?source the stack env (env.sh in the stack run directory) first}"

# The pids of the stack's broker and ClickHouse, as "kafka=PID clickhouse=PID" (what is
# found). The run directory is not in the stack env, so candidates are tried in order: the
# one named by BENCH_RUN_DIR or MAILPIPE_RUN_DIR, then .run/bench (scripts/bench.sh's own
# stack) and .run (`make up`). A candidate counts only if its env.sh points at the broker
# we were given (another stack may have left a run directory behind), and a pid only if
# that process is alive and was started with the run directory's configuration (its
# command line names the run directory: a stale pid file's number may have been reused).
service_pids() {
    local dir abs pid svc out
    for dir in ${BENCH_RUN_DIR:+"$BENCH_RUN_DIR"} ${MAILPIPE_RUN_DIR:+"$MAILPIPE_RUN_DIR"} .run/bench .run; do
        [[ -f $dir/env.sh ]] || continue
        grep -qxF "export MAILPIPE_KAFKA__BROKERS=$MAILPIPE_KAFKA__BROKERS" "$dir/env.sh" || continue
        abs=$(cd "$dir" && pwd)
        out=()
        for svc in kafka clickhouse; do
            pid=$(head -n1 "$dir/pids/$svc.pid" 2>/dev/null || true)
            [[ $pid =~ ^[0-9]+$ ]] || continue
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$abs/" || continue
            out+=("$svc=$pid")
        done
        printf '%s' "${out[*]}"
        return 0
    done
}

if [[ -z ${PIPELINE_BENCH_SERVICE_PIDS:-} ]]; then
    PIPELINE_BENCH_SERVICE_PIDS=$(service_pids)
fi
export PIPELINE_BENCH_SERVICE_PIDS
echo "broker and ClickHouse sampled: ${PIPELINE_BENCH_SERVICE_PIDS:-none found (RSS \"not sampled\")}"
# mailpipe reads every MAILPIPE_* variable as a setting; the run directory is not one.
unset MAILPIPE_RUN_DIR

# The bench starts the binaries next to its own (release) test executable.
cargo build -q --release --workspace --bins
exec cargo test -q --release -p mailpipe-tests --test it -- pipeline_bench:: \
    --ignored --nocapture --test-threads=1
