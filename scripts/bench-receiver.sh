#!/usr/bin/env bash
# scripts/bench-receiver.sh — throughput and latency of the edge receiver next to a bare
# axum handler, in one run on the same machine (issue 3, `make bench`).
#
# Both servers get the same load from wrk: POST /webhooks/postmark, 1 KiB JSON bodies,
# 64 connections, BENCH_DURATION seconds after a short warm-up. The receiver does its real
# work: guards, Avro encoding, and a durable produce (acks=all, idempotent) to the broker
# of the running stack, answering each request only after the acknowledgement. It also
# reports the receiver's own CPU time per request (user + system, from /proc/<pid>/stat
# over the measured run; goal <= 30 us).
#
# Needs the local stack (`make up`, or scripts/stack.sh up): broker and schema registry.
# Addresses come from MAILPIPE_* env, else from .run/env.sh, else the defaults.
#
# Environment (all optional):
#   BENCH_DURATION     seconds of measured load per server      (default 20)
#   BENCH_CONNECTIONS  concurrent connections                   (default 64)
#   BENCH_THREADS      wrk threads                              (default 2)
#   BENCH_RECEIVER_PORT / BENCH_BARE_PORT                       (default 18080 / 18090)
#   BENCH_LOG_FILTER   receiver log filter; access logs are info (default info)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mailpipe/target}
export PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
DURATION=${BENCH_DURATION:-20}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
RECEIVER_PORT=${BENCH_RECEIVER_PORT:-18080}
BARE_PORT=${BENCH_BARE_PORT:-18090}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailpipe-bench.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
    echo "==> installing wrk (apt-get)"
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi

if [[ -z ${MAILPIPE_KAFKA__BROKERS:-} && -f .run/env.sh ]]; then
    # shellcheck source=/dev/null
    source .run/env.sh
fi
BROKERS=${MAILPIPE_KAFKA__BROKERS:-127.0.0.1:9092}
REGISTRY=${MAILPIPE_SCHEMA_REGISTRY__URL:-http://127.0.0.1:8081/apis/ccompat/v7}
if ! curl -sf -o /dev/null --max-time 2 "$REGISTRY/subjects"; then
    echo "error: no schema registry at $REGISTRY; start the stack first (make up)" >&2
    exit 1
fi

echo "==> building: mailpipe-receiver and the bare axum example (release), mailpipe (debug)"
cargo build --release -q -p mailpipe-stage-1-receiver --bin mailpipe-receiver --example bare_axum
cargo build -q -p mailpipe --bin mailpipe
BIN=$CARGO_TARGET_DIR/release

PREFIX="bench-$(date +%s)."
echo "==> creating topics with prefix $PREFIX on $BROKERS"
MAILPIPE_KAFKA__TOPIC_PREFIX=$PREFIX "$CARGO_TARGET_DIR/debug/mailpipe" create-topics >/dev/null

# 1 KiB of JSON, like one small ESP batch.
PAD=$(head -c 950 /dev/zero | tr '\0' 'x')
cat >"$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '[{"RecordType":"Delivery","Recipient":"a@example.com","Pad":"$PAD"}]'
LUA

echo "==> starting the receiver on 127.0.0.1:$RECEIVER_PORT (logs: $WORK/receiver.log)"
MAILPIPE_RECEIVER__LISTEN=127.0.0.1:$RECEIVER_PORT \
    MAILPIPE_KAFKA__TOPIC_PREFIX=$PREFIX \
    MAILPIPE_RECEIVER__RATE_LIMIT__PER_SOURCE_PER_SECOND=0 \
    MAILPIPE_RECEIVER__RATE_LIMIT__PER_IP_PER_SECOND=0 \
    MAILPIPE_TELEMETRY__LOG_FILTER=${BENCH_LOG_FILTER:-info} \
    "$BIN/mailpipe-receiver" 2>"$WORK/receiver.log" &
RECEIVER_PID=$!
PIDS+=($RECEIVER_PID)
"$BIN/examples/bare_axum" "127.0.0.1:$BARE_PORT" 2>"$WORK/bare.log" &
PIDS+=($!)
for _ in $(seq 1 120); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RECEIVER_PORT/readyz") == 200 ]] && break
    sleep 0.5
done
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RECEIVER_PORT/readyz") == 200 ]] || {
    echo "error: receiver not ready; see $WORK/receiver.log" >&2
    tail -n 20 "$WORK/receiver.log" >&2
    exit 1
}

# wrk latency in ms, whatever unit it printed.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }

# CPU time (user + system) of <pid> so far, in clock ticks: fields 14 and 15 of
# /proc/<pid>/stat, counted after the ")" that ends the command name.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
TICKS_PER_SEC=$(getconf CLK_TCK)

# run <name> <url> [pid]: warm up, measure, print "rps p50_ms p99_ms non2xx requests
# cpu_us_per_request" (the last is "-" without a pid).
run() {
    wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -s "$WORK/post.lua" "$2" >/dev/null
    local before=0 after=0
    [[ -n ${3:-} ]] && before=$(cpu_ticks "$3")
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/post.lua" "$2" >"$WORK/$1.wrk"
    [[ -n ${3:-} ]] && after=$(cpu_ticks "$3")
    local rps p50 p99 bad requests cpu=-
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/$1.wrk")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$WORK/$1.wrk")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$WORK/$1.wrk")")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' "$WORK/$1.wrk")
    requests=$(awk '/requests in/ { print $1 }' "$WORK/$1.wrk")
    if [[ -n ${3:-} ]] && ((requests > 0)); then
        cpu=$(awk -v t=$((after - before)) -v hz="$TICKS_PER_SEC" -v n="$requests" \
            'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    fi
    echo "$rps $p50 $p99 ${bad:-0} $requests $cpu"
}

echo "==> load: $CONNECTIONS connections, $THREADS wrk threads, ${DURATION}s each, 1 KiB bodies"
read -r BARE_RPS BARE_P50 BARE_P99 BARE_BAD _ _ < <(run bare "http://127.0.0.1:$BARE_PORT/webhooks/postmark")
read -r RCV_RPS RCV_P50 RCV_P99 RCV_BAD RCV_REQUESTS RCV_CPU < <(run receiver "http://127.0.0.1:$RECEIVER_PORT/webhooks/postmark" "$RECEIVER_PID")
RATIO=$(awk -v a="$RCV_RPS" -v b="$BARE_RPS" 'BEGIN { printf "%.2f", a / b }')

printf '\n%-34s %12s %10s %10s %10s\n' "server" "requests/s" "p50 ms" "p99 ms" "non-2xx"
printf '%-34s %12s %10s %10s %10s\n' "bare axum (reads body, 200)" "$BARE_RPS" "$BARE_P50" "$BARE_P99" "$BARE_BAD"
printf '%-34s %12s %10s %10s %10s\n' "mailpipe-receiver (acks=all)" "$RCV_RPS" "$RCV_P50" "$RCV_P99" "$RCV_BAD"
printf '\nreceiver / bare axum (requests/s): %s   (goal >= 0.5)\n' "$RATIO"
printf 'receiver CPU time per request: %s us (user + system over %s requests; goal <= 30 us)\n' "$RCV_CPU" "$RCV_REQUESTS"
printf 'machine: %s cores; broker %s; wrk output in %s\n' "$(nproc)" "$BROKERS" "$WORK"
if [[ $RCV_BAD != 0 ]]; then
    echo "warning: the receiver answered $RCV_BAD requests with non-2xx (see $WORK/receiver.log)" >&2
fi
