#!/usr/bin/env bash
# scripts/run.sh — `make run`: start the local stack and every built stage, print where to
# look, then follow all logs in the foreground. Ctrl-C stops everything and exits.
#
# Uses the same environment as scripts/stack.sh (MAILPIPE_RUN_DIR, *_PORT, ...), plus
# RECEIVER_PORT (default 8080) and CONSOLE_PORT (default 8090) for the printed URLs.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=$REPO_ROOT/scripts/stack.sh

RUN_DIR=${MAILPIPE_RUN_DIR:-$REPO_ROOT/.run}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/pids

KAFKA_PORT=${KAFKA_PORT:-9092}
CLICKHOUSE_HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-8123}
CLICKHOUSE_TCP_PORT=${CLICKHOUSE_TCP_PORT:-9000}
REDIS_PORT=${REDIS_PORT:-6379}
REGISTRY_PORT=${REGISTRY_PORT:-8081}
RECEIVER_PORT=${RECEIVER_PORT:-8080}
CONSOLE_PORT=${CONSOLE_PORT:-8090}

TAIL_PID=""

# On Ctrl-C / SIGTERM (and on any exit): stop following the logs, stop the stack.
# The services run in their own sessions, so the terminal's Ctrl-C reaches only this
# script (and make), never them directly: they are stopped in order by `stack.sh down`.
cleanup() {
    local rc=$?
    trap '' INT TERM # a second Ctrl-C must not interrupt the shutdown
    trap - EXIT
    if [[ -n $TAIL_PID ]]; then
        kill "$TAIL_PID" 2>/dev/null || true
        wait "$TAIL_PID" 2>/dev/null || true
    fi
    printf '\n==> stopping the stack\n'
    "$STACK" down || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' INT TERM # Ctrl-C is how `make run` is meant to end: a clean exit

"$STACK" up

running() { [[ -s $PID_DIR/$1.pid ]]; }

# A burst of correctly signed sample webhooks from every provider (5 % re-posted, as ESPs
# retry), a few forged/stale/malformed ones, then what reached Kafka and ClickHouse.
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mailpipe/target}
MAILPIPE_BIN=${STACK_BIN_DIR:-$CARGO_TARGET_DIR/debug}/mailpipe
RUN_SAMPLES=${RUN_SAMPLES:-1200}
if ((RUN_SAMPLES > 0)) && [[ -x $MAILPIPE_BIN ]] && running receiver; then
    # shellcheck disable=SC1091
    source "$RUN_DIR/env.sh"
    cd "$REPO_ROOT"
    printf '\n==> mailpipe send-samples: %s signed events from every provider\n' "$RUN_SAMPLES"
    env -u MAILPIPE_RUN_DIR "$MAILPIPE_BIN" send-samples --count "$RUN_SAMPLES" \
        --duplicates 0.05 --summary-json "$RUN_DIR/samples.json" ||
        printf 'warning: send-samples did not get everything accepted\n' >&2
    printf '\n==> mailpipe send-samples --bad: forged, stale and malformed requests\n'
    env -u MAILPIPE_RUN_DIR "$MAILPIPE_BIN" send-samples --bad --count 48 --seed 2 \
        --summary-json "$RUN_DIR/samples-bad.json" ||
        printf 'warning: send-samples --bad did not get everything accepted\n' >&2
    printf '\n==> mailpipe summary (waiting for the samples to reach ClickHouse)\n'
    env -u MAILPIPE_RUN_DIR "$MAILPIPE_BIN" summary --expect "$RUN_DIR/samples.json" --wait 180 ||
        printf 'warning: ClickHouse does not (yet) hold exactly the accepted samples\n' >&2
    printf '\n(mail.rejected holds the forged and stale requests, mail.dlq the malformed ones.)\n'
fi

printf '\n'
printf 'mailpipe is running (run directory %s).\n\n' "$RUN_DIR"
if running receiver; then
    printf '  %-16s http://127.0.0.1:%s\n' "receiver" "$RECEIVER_PORT"
fi
if running console; then
    printf '  %-16s http://127.0.0.1:%s\n' "console" "$CONSOLE_PORT"
fi
printf '  %-16s 127.0.0.1:%s   (Apache Kafka; mailpipe summary lists the topics)\n' "Kafka broker" "$KAFKA_PORT"
printf '  %-16s http://127.0.0.1:%s/apis/ccompat/v7/subjects   (Apicurio Registry, Confluent-compatible API)\n' "schema registry" "$REGISTRY_PORT"
printf '  %-16s curl -s http://127.0.0.1:%s/ --data-binary '\''SHOW TABLES FROM mailpipe'\''\n' "ClickHouse" "$CLICKHOUSE_HTTP_PORT"
printf '  %-16s clickhouse-client --port %s\n' "" "$CLICKHOUSE_TCP_PORT"
printf '  %-16s redis-cli -p %s\n' "Redis" "$REDIS_PORT"
printf '  %-16s mailpipe summary   (Kafka records per topic, events per provider and type)\n' "summary"
printf '  %-16s %s/<name>.log\n' "logs" "$LOG_DIR"
printf '\nFollowing the logs; press Ctrl-C to stop everything.\n\n'

# Follow the log of everything that runs, each line prefixed with its unit's name.
logs=()
for pid_file in "$PID_DIR"/*.pid; do
    [[ -e $pid_file ]] || continue
    unit=$(basename "$pid_file" .pid)
    logs+=("$LOG_DIR/$unit.log")
done
((${#logs[@]})) || exit 0
# tail prints "==> <file> <==" when it switches files; awk turns that into the prefix.
# mawk (Debian's awk) reads its input in blocks unless told to be interactive.
awk_flags=()
if awk -W version 2>/dev/null | grep -q mawk; then awk_flags=(-W interactive); fi
tail -n 5 -F "${logs[@]}" 2>/dev/null > >(awk "${awk_flags[@]}" '
    /^==> .* <==$/ { name = $0; sub(/^==> /, "", name); sub(/ <==$/, "", name)
                     sub(/.*\//, "", name); sub(/\.log$/, "", name); next }
    /^$/ { next }
    { printf "%-16s| %s\n", name, $0; fflush() }') &
TAIL_PID=$!
wait "$TAIL_PID"
