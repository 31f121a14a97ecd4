#!/usr/bin/env bash
# scripts/stack.sh — the local development stack of mailpipe.
#
#   scripts/stack.sh install   install what is missing (Debian packages, Java and Maven,
#                              Apache Kafka and Apicurio Registry from Maven Central)
#   scripts/stack.sh up        start Apache Kafka (one KRaft node), ClickHouse, Redis and
#                              Apicurio Registry, create topics, apply migrations, start the stages
#   scripts/stack.sh down      stop exactly what `up` started
#   scripts/stack.sh stop UNIT...  stop only these stages or services (`up` restarts them)
#   scripts/stack.sh status    show each service and stage, its pid, port and health
#   scripts/stack.sh kafka-exec
#                              format the Kafka data directory if needed and exec the broker
#                              in the foreground (tests that stop and restart a broker of their
#                              own run this with their own MAILPIPE_RUN_DIR and ports)
#
# Everything this script starts lives in one run directory (MAILPIPE_RUN_DIR, default
# <repo>/.run): data under data/<service>, logs in logs/<service>.log, pid files in
# pids/<service>.pid. Every service listens on 127.0.0.1 only.
#
# Environment (all optional):
#   MAILPIPE_RUN_DIR       run directory                        (default <repo>/.run)
#   KAFKA_PORT             Kafka broker (PLAINTEXT listener)    (default 9092)
#   KAFKA_CONTROLLER_PORT  Kafka KRaft controller listener      (default KAFKA_PORT + 1)
#   CLICKHOUSE_HTTP_PORT   ClickHouse HTTP interface            (default 8123)
#   CLICKHOUSE_TCP_PORT    ClickHouse native protocol           (default 9000)
#   REDIS_PORT             Redis                                (default 6379)
#   REGISTRY_PORT          Apicurio Registry (HTTP)             (default 8081; the
#                          Confluent-compatible API is at /apis/ccompat/v7)
#   SNS_CERT_PORT          dev SNS certificate for the SES samples (default 8099)
#   KAFKA_DIST_DIR         the broker's jars (`install` fills it)
#                          (default ~/.cache/mailpipe/kafka-<version>, version from
#                          deploy/local/kafka/pom.xml)
#   KAFKA_JAVA             java (>= 17) that runs the broker    (default: java on PATH)
#   KAFKA_HEAP             broker heap, -Xms and -Xmx           (default 512m)
#   REGISTRY_MANAGEMENT_PORT  the registry's health and metrics (default REGISTRY_PORT + 1)
#   REGISTRY_DIST_DIR      Apicurio Registry (`install` fills it)
#                          (default ~/.cache/mailpipe/apicurio-registry-<REGISTRY_VERSION>)
#   REGISTRY_JAVA          java (>= 21) that runs the registry  (default: the newest
#                          java >= 21 of PATH and /usr/lib/jvm/*)
#   REGISTRY_HEAP          registry heap, -Xmx                  (default 192m)
#   CARGO_TARGET_DIR       where `make build` put our binaries  (default ~/.cache/mailpipe/target)
#   STACK_BIN_DIR          our binaries                         (default $CARGO_TARGET_DIR/debug)
#   STACK_STAGES           stages to start if built (default: all; "" starts none)
#   STACK_READY_TIMEOUT    seconds to wait for each service     (default 60)
#   STACK_STOP_TIMEOUT     seconds between SIGTERM and SIGKILL  (default 10)
#
# Note: only MAILPIPE_RUN_DIR carries the MAILPIPE_ prefix. mailpipe's settings read every
# MAILPIPE_* variable as a config key, so this script removes MAILPIPE_RUN_DIR from the
# environment of the mailpipe binaries it runs.
set -euo pipefail

# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

RUN_DIR=${MAILPIPE_RUN_DIR:-$REPO_ROOT/.run}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd) # absolute: services chdir into their data directories
DATA_DIR=$RUN_DIR/data
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/pids
CONF_DIR=$RUN_DIR/conf

KAFKA_PORT=${KAFKA_PORT:-9092}
CLICKHOUSE_HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-8123}
CLICKHOUSE_TCP_PORT=${CLICKHOUSE_TCP_PORT:-9000}
REDIS_PORT=${REDIS_PORT:-6379}
REGISTRY_PORT=${REGISTRY_PORT:-8081}
SNS_CERT_PORT=${SNS_CERT_PORT:-8099}

CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mailpipe/target}
BIN_DIR=${STACK_BIN_DIR:-$CARGO_TARGET_DIR/debug}

KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
KAFKA_POM=$REPO_ROOT/deploy/local/kafka/pom.xml
# The pinned version is the one in the POM (<kafka.version>), so there is a single pin.
KAFKA_VERSION=$(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' "$KAFKA_POM")
KAFKA_DIST_DIR=${KAFKA_DIST_DIR:-$HOME/.cache/mailpipe/kafka-$KAFKA_VERSION}
KAFKA_JAVA=${KAFKA_JAVA:-java}
KAFKA_HEAP=${KAFKA_HEAP:-512m}

# Apicurio Registry, the Confluent-compatible schema registry (Quarkus fast-jar from Maven
# Central: io.apicurio:apicurio-registry-app:<version>:tar.gz:all). 3.3.x needs Java 21+.
REGISTRY_VERSION=3.3.3
REGISTRY_DIST_DIR=${REGISTRY_DIST_DIR:-$HOME/.cache/mailpipe/apicurio-registry-$REGISTRY_VERSION}
REGISTRY_HEAP=${REGISTRY_HEAP:-192m}
REGISTRY_MANAGEMENT_PORT=${REGISTRY_MANAGEMENT_PORT:-$((REGISTRY_PORT + 1))}
# The base URL every mailpipe binary's [schema_registry] url points at.
REGISTRY_API_PATH=/apis/ccompat/v7

READY_TIMEOUT=${STACK_READY_TIMEOUT:-60}
STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-10}

# Backing services, in start order (`down` stops them in reverse order).
SERVICES="kafka clickhouse redis schema-registry"

# Pipeline stages, in start order. Stage <name> is the binary mailpipe-<name> in BIN_DIR;
# a stage that is not built (yet) is skipped silently. sns-cert is `mailpipe
# serve-dev-cert`: DEVELOPMENT ONLY, it serves config/dev-keys/sns-signing-cert.pem on
# loopback so SES samples verify locally (the verify stage started here accepts an http://
# loopback certificate URL for that; see README "Sample traffic").
STAGES=${STACK_STAGES-sns-cert receiver verify normalize dedupe aggregate rules deliver console}

# clickhouse-server lives in /usr/sbin, which is not on every user's PATH.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------

info() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
err() { printf 'error: %s\n' "$*" >&2; }

# A path for messages: relative to the current directory when it is below it.
rel() {
    case $1 in
        "$PWD"/*) printf '%s' "${1#"$PWD"/}" ;;
        *) printf '%s' "$1" ;;
    esac
}

log_file() { printf '%s/%s.log' "$LOG_DIR" "$1"; }
pid_file() { printf '%s/%s.pid' "$PID_DIR" "$1"; }

# Print the last lines of a service's log (to stderr).
show_log_tail() {
    local log
    log=$(log_file "$1")
    [[ -s $log ]] || return 0
    printf -- '--- last lines of %s ---\n' "$(rel "$log")" >&2
    tail -n "${2:-20}" "$log" >&2
    printf -- '---\n' >&2
}

# Is something accepting connections on 127.0.0.1:<port>?
port_open() {
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Run a command as root: directly when we are root, otherwise through sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        err "need root to run '$*', and sudo is not installed"
        return 1
    fi
}

# --------------------------------------------------------------------------------------
# Processes and pid files
# --------------------------------------------------------------------------------------

# Is <pid> a live process (not a zombie)?
pid_alive() {
    local pid=$1 stat state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
    # /proc/<pid>/stat is "pid (comm) state ..."; comm may hold spaces and parentheses.
    state=${stat##*) }
    state=${state%% *}
    [[ -n $state && $state != Z && $state != X ]]
}

# The binary a unit runs (absolute path; empty when it is not installed or not built).
unit_binary() {
    case $1 in
        kafka) [[ -f $KAFKA_DIST_DIR/libs/.complete ]] && command -v "$KAFKA_JAVA" ;;
        clickhouse) command -v clickhouse-server || true ;;
        redis) command -v redis-server || true ;;
        schema-registry) [[ -f $REGISTRY_DIST_DIR/.complete ]] && registry_java ;;
        sns-cert) [[ -x $BIN_DIR/mailpipe ]] && printf '%s' "$BIN_DIR/mailpipe" ;;
        *) [[ -x $BIN_DIR/mailpipe-$1 ]] && printf '%s' "$BIN_DIR/mailpipe-$1" ;;
    esac
    return 0
}

# The working directory a unit is started in. Services get their own data directory
# (the broker's logs and heap dumps land there); stages run in the repository root, where
# config/mailpipe.toml is found.
unit_workdir() {
    case " $SERVICES " in
        *" $1 "*) printf '%s/%s' "$DATA_DIR" "$1" ;;
        *) printf '%s' "$REPO_ROOT" ;;
    esac
}

# Is <pid> the process we started for <unit>? It must be alive, run the unit's binary
# (/proc/<pid>/exe; " (deleted)" when the binary was replaced by a rebuild) and, for
# services, have the unit's data directory of THIS run directory as working directory.
# This keeps `down` from ever signalling an unrelated process that reused the pid.
pid_is_ours() {
    local unit=$1 pid=$2 exe want cwd
    pid_alive "$pid" || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    want=$(unit_binary "$unit")
    if [[ -n $want ]]; then
        [[ $exe == "$(readlink -f "$want")" ]] || return 1
    else
        # Binary gone since (e.g. `cargo clean`): fall back to the expected file name.
        case $unit in
            kafka) [[ ${exe##*/} == java ]] || return 1 ;;
            clickhouse) [[ ${exe##*/} == clickhouse-server ]] || return 1 ;;
            redis) [[ ${exe##*/} == redis-* ]] || return 1 ;;
            schema-registry) [[ ${exe##*/} == java ]] || return 1 ;;
            sns-cert) [[ $exe == "$BIN_DIR/mailpipe" ]] || return 1 ;;
            *) [[ $exe == "$BIN_DIR/mailpipe-$unit" ]] || return 1 ;;
        esac
    fi
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
    [[ $cwd == "$(unit_workdir "$unit")" ]]
}

# Print the pid of <unit> if its pid file points at a live process of ours; otherwise
# remove a stale pid file and fail.
running_pid() {
    local unit=$1 file pid
    file=$(pid_file "$unit")
    [[ -f $file ]] || return 1
    pid=$(head -n1 "$file" 2>/dev/null || true)
    if pid_is_ours "$unit" "$pid"; then
        printf '%s' "$pid"
        return 0
    fi
    if pid_alive "$pid"; then
        warn "$(rel "$file") points at pid $pid, which is not our $unit ($(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)); leaving that process alone"
    fi
    rm -f "$file"
    return 1
}

# Start <unit> in the background: `launch <unit> <command...>`. The process runs in its own
# session (setsid), so a Ctrl-C in the terminal reaches only `scripts/run.sh`, which then
# stops everything in order. Output goes to logs/<unit>.log, the pid to pids/<unit>.pid.
launch() {
    local unit=$1 workdir log
    shift
    workdir=$(unit_workdir "$unit")
    log=$(log_file "$unit")
    mkdir -p "$workdir" "$LOG_DIR" "$PID_DIR"
    printf '==== %s starting %s:%s\n' "$(date '+%F %T')" "$unit" "$(printf ' %q' "$@")" >>"$log"
    # The subshell execs setsid, which (not being a process group leader) calls setsid()
    # and execs the command: $! is the service's own pid.
    (cd "$workdir" && exec setsid "$@") >>"$log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"$(pid_file "$unit")"
    STARTED+=("$unit")
}

# Stop <unit> by its pid file: SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL.
stop_unit() {
    local unit=$1 pid waited=0
    pid=$(running_pid "$unit") || { rm -f "$(pid_file "$unit")"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    while pid_alive "$pid" && ((waited < STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if pid_alive "$pid"; then
        warn "$unit (pid $pid) did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        waited=0
        while pid_alive "$pid" && ((waited < 50)); do
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    rm -f "$(pid_file "$unit")"
    info "stopped $unit (pid $pid)"
}

# --------------------------------------------------------------------------------------
# Services: ports, start commands, readiness checks
# --------------------------------------------------------------------------------------

service_ports() {
    case $1 in
        kafka) echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
        clickhouse) echo "$CLICKHOUSE_HTTP_PORT $CLICKHOUSE_TCP_PORT" ;;
        redis) echo "$REDIS_PORT" ;;
        schema-registry) echo "$REGISTRY_PORT $REGISTRY_MANAGEMENT_PORT" ;;
    esac
}

# Write the ClickHouse config for this run from deploy/local/clickhouse/*.xml.
write_clickhouse_config() {
    local src=$REPO_ROOT/deploy/local/clickhouse dst=$CONF_DIR/clickhouse
    mkdir -p "$dst" "$DATA_DIR/clickhouse"
    sed -e "s|@CH_DATA_DIR@|$DATA_DIR/clickhouse|g" \
        -e "s|@CH_LOG@|$(log_file clickhouse)|g" \
        -e "s|@CH_ERRLOG@|$LOG_DIR/clickhouse.err.log|g" \
        -e "s|@CLICKHOUSE_HTTP_PORT@|$CLICKHOUSE_HTTP_PORT|g" \
        -e "s|@CLICKHOUSE_TCP_PORT@|$CLICKHOUSE_TCP_PORT|g" \
        "$src/config.xml" >"$dst/config.xml"
    cp "$src/users.xml" "$dst/users.xml"
}

# --------------------------------------------------------------------------------------
# Apache Kafka: one combined broker+controller (KRaft) on loopback
# --------------------------------------------------------------------------------------

# The major version of a java binary (17 for "17.0.15", 8 for "1.8.0_392"); empty if none.
java_major() {
    local v
    v=$("$1" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
    [[ $v == 1.* ]] && v=${v#1.}
    printf '%s' "${v%%[.+-]*}"
}

# Does the broker on 127.0.0.1:<port> answer a Metadata request (v4, all topics) with at
# least one broker in it? Plain bash: no client tool needed. The request is
# size | api_key 3 | version 4 | correlation id 1 | client id "probe" | topics null | no
# auto-creation; the answer starts size | correlation id | throttle ms | broker count.
kafka_metadata_answers() {
    local reply
    reply=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "\x00\x00\x00\x14\x00\x03\x00\x04\x00\x00\x00\x01\x00\x05probe\xff\xff\xff\xff\x00" >&3
        head -c 16 <&3 | od -An -v -tu1' _ "$1" 2>/dev/null) || return 1
    read -r -a bytes <<<"$reply"
    ((${#bytes[@]} == 16)) || return 1
    # Correlation id 1, and a broker count (bytes 12..15) above zero.
    ((bytes[7] == 1 && (bytes[12] | bytes[13] | bytes[14] | bytes[15]) > 0))
}

# Write the broker's configuration for this run directory from deploy/local/kafka/ and
# format its storage on first start. Sets KAFKA_COMMAND, the command line that runs it.
prepare_kafka() {
    local conf=$CONF_DIR/kafka data=$DATA_DIR/kafka/log-dirs cluster_id
    mkdir -p "$conf" "$data" "$LOG_DIR"
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@KAFKA_LOG_DIRS@|$data|g" \
        "$REPO_ROOT/deploy/local/kafka/server.properties" >"$conf/server.properties"
    KAFKA_COMMAND=("$(command -v "$KAFKA_JAVA")" "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP"
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$REPO_ROOT/deploy/local/kafka/log4j2.yaml" "-Dkafka.logs.dir=$LOG_DIR"
        -cp "$KAFKA_DIST_DIR/libs/*")
    if [[ ! -f $data/meta.properties ]]; then
        # A cluster id is 16 random bytes, base64url without padding.
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
        if ! "${KAFKA_COMMAND[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
            -c "$conf/server.properties" >>"$(log_file kafka)" 2>&1; then
            err "formatting the Kafka storage in $(rel "$data") failed"
            show_log_tail kafka
            return 1
        fi
    fi
    KAFKA_COMMAND+=(kafka.Kafka "$conf/server.properties")
}

# `stack.sh kafka-exec`: the broker in the foreground, as this process (a SIGKILL of it is a
# broker crash). Used by tests that stop and restart a broker of their own.
cmd_kafka_exec() {
    [[ -n $(unit_binary kafka) ]] || { err "Apache Kafka not found in $KAFKA_DIST_DIR (or no java); run 'make install'"; return 1; }
    prepare_kafka
    cd "$(unit_workdir kafka)"
    exec "${KAFKA_COMMAND[@]}"
}

# Fetch the pinned broker from Maven Central into KAFKA_DIST_DIR (quiet when present).
install_kafka() {
    local libs=$KAFKA_DIST_DIR/libs tmp started=$SECONDS major
    major=$(java_major "$KAFKA_JAVA")
    if [[ -z $major ]] || ((major < 17)); then
        err "the Kafka broker needs Java >= 17; '$KAFKA_JAVA' is ${major:-missing} (set KAFKA_JAVA)"
        return 1
    fi
    [[ -f $libs/.complete ]] && return 0
    info "==> fetching Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_DIST_DIR"
    tmp=$KAFKA_DIST_DIR/libs.partial
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_DIST_DIR/mvn.log" 2>&1; then
        cat "$KAFKA_DIST_DIR/mvn.log" >&2
        err "could not fetch Apache Kafka $KAFKA_VERSION with Maven (output above)"
        return 1
    fi
    ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null || { err "kafka_2.13-$KAFKA_VERSION.jar missing after the copy"; return 1; }
    rm -rf "$libs"
    mv "$tmp" "$libs"
    touch "$libs/.complete"
    info "    $(find "$libs" -name '*.jar' | wc -l) jars, $(du -sh "$libs" | cut -f1), in $((SECONDS - started)) s"
}

# --------------------------------------------------------------------------------------
# Apicurio Registry: the Confluent-compatible schema registry, on loopback
# --------------------------------------------------------------------------------------

# The java that runs the registry: REGISTRY_JAVA if set, else the newest java >= 21 among
# `java` on PATH and /usr/lib/jvm/*/bin/java. Prints nothing when there is none.
registry_java() {
    local candidate major best= best_major=0
    if [[ -n ${REGISTRY_JAVA:-} ]]; then
        command -v "$REGISTRY_JAVA" || true
        return 0
    fi
    for candidate in "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
        [[ -n $candidate && -x $candidate ]] || continue
        major=$(java_major "$candidate")
        if [[ -n $major ]] && ((major >= 21 && major > best_major)); then
            best=$candidate
            best_major=$major
        fi
    done
    [[ -n $best ]] && readlink -f "$best"
    return 0
}

# Fetch the pinned registry from Maven Central and unpack it into REGISTRY_DIST_DIR (quiet
# when present).
install_registry() {
    local java major tmp started=$SECONDS artifact=io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all
    java=$(registry_java)
    major=
    [[ -z $java ]] || major=$(java_major "$java")
    if [[ -z $major ]] || ((major < 21)); then
        err "Apicurio Registry $REGISTRY_VERSION needs Java >= 21; found ${java:-none} ${major:+(Java $major)} (set REGISTRY_JAVA, e.g. /usr/lib/jvm/temurin-25-jdk-amd64/bin/java)"
        return 1
    fi
    [[ -f $REGISTRY_DIST_DIR/.complete ]] && return 0
    info "==> fetching Apicurio Registry $REGISTRY_VERSION from Maven Central into $REGISTRY_DIST_DIR"
    tmp=$REGISTRY_DIST_DIR.partial
    rm -rf "$tmp"
    mkdir -p "$tmp/download"
    if ! mvn -B -q -Dstyle.color=never \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
        -Dartifact="$artifact" -DoutputDirectory="$tmp/download" >"$tmp/mvn.log" 2>&1; then
        cat "$tmp/mvn.log" >&2
        err "could not fetch $artifact with Maven (output above)"
        return 1
    fi
    tar -xzf "$tmp/download"/apicurio-registry-app-*.tar.gz -C "$tmp" || { err "could not unpack $artifact"; return 1; }
    [[ -f $tmp/quarkus-run.jar ]] || { err "quarkus-run.jar missing from $artifact"; return 1; }
    rm -rf "$tmp/download" "$REGISTRY_DIST_DIR"
    mv "$tmp" "$REGISTRY_DIST_DIR"
    touch "$REGISTRY_DIST_DIR/.complete"
    info "    $(du -sh "$REGISTRY_DIST_DIR" | cut -f1) in $((SECONDS - started)) s (runs on $java, Java $major)"
}

# Sets REGISTRY_COMMAND, the command line that runs the registry for this run directory:
#   - HTTP on 127.0.0.1:REGISTRY_PORT; Quarkus' management interface (health, metrics;
#     by default on 0.0.0.0:9000, ClickHouse's native port) on 127.0.0.1:REGISTRY_MANAGEMENT_PORT;
#   - BACKWARD compatibility enforced on every registration (Apicurio checks none by
#     default, unlike Confluent): a schema that cannot read the subject's latest is refused;
#   - storage: the embedded H2 database, kept in data/schema-registry. Not H2's default
#     in-memory mode: the broker's data outlives a restart, so the schema ids its records
#     carry must too (in memory, ids would be handed out anew, to other schemas).
prepare_registry() {
    local data=$DATA_DIR/schema-registry
    mkdir -p "$data"
    REGISTRY_COMMAND=("$(registry_java)" "-Xmx$REGISTRY_HEAP" -XX:+UseSerialGC -XX:TieredStopAtLevel=1
        -Djava.awt.headless=true
        -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$REGISTRY_PORT"
        -Dquarkus.management.host=127.0.0.1 "-Dquarkus.management.port=$REGISTRY_MANAGEMENT_PORT"
        -Dapicurio.rules.global.compatibility=BACKWARD
        "-Dapicurio.datasource.url=jdbc:h2:file:$data/registry"
        -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2
        -Dapicurio.datasource.jdbc.max-size=10
        -jar "$REGISTRY_DIST_DIR/quarkus-run.jar")
}

start_service() {
    local bin
    bin=$(unit_binary "$1")
    case $1 in
        kafka)
            [[ -n $bin ]] || { err "Apache Kafka not found in $KAFKA_DIST_DIR (or no java); run 'make install' (or scripts/stack.sh install)"; return 1; }
            prepare_kafka
            launch kafka "${KAFKA_COMMAND[@]}"
            ;;
        clickhouse)
            [[ -n $bin ]] || { err "clickhouse-server not found; run 'make install' (or scripts/stack.sh install)"; return 1; }
            write_clickhouse_config
            launch clickhouse "$bin" --config-file="$CONF_DIR/clickhouse/config.xml"
            ;;
        redis)
            [[ -n $bin ]] || { err "redis-server not found; run 'make install' (or scripts/stack.sh install)"; return 1; }
            # Persistent (AOF, fsync every second): the rules' schedule of delayed actions
            # and the delivery schedule must survive a restart of Redis.
            launch redis "$bin" --port "$REDIS_PORT" --bind 127.0.0.1 \
                --save "" --appendonly yes --appendfsync everysec --daemonize no --logfile "" \
                --dir "$DATA_DIR/redis"
            ;;
        schema-registry)
            [[ -n $bin ]] || { err "Apicurio Registry not found in $REGISTRY_DIST_DIR (or no java >= 21); run 'make install' (or scripts/stack.sh install)"; return 1; }
            prepare_registry
            launch schema-registry "${REGISTRY_COMMAND[@]}"
            ;;
    esac
}

# One readiness probe; succeeds when the service answers.
service_ready() {
    case $1 in
        kafka)
            port_open "$KAFKA_PORT" && kafka_metadata_answers "$KAFKA_PORT"
            ;;
        clickhouse)
            [[ $(curl -s --max-time 2 "http://127.0.0.1:$CLICKHOUSE_HTTP_PORT/ping" 2>/dev/null) == "Ok." ]]
            ;;
        redis)
            [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
            ;;
        schema-registry)
            [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$REGISTRY_PORT$REGISTRY_API_PATH/subjects" 2>/dev/null) == 200 ]]
            ;;
    esac
}

# Wait until <service> answers; fail (showing its log) if it exits or times out.
wait_ready() {
    local svc=$1 pid=$2 deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        if ! pid_alive "$pid"; then
            err "$svc exited during startup; see $(rel "$(log_file "$svc")")"
            show_log_tail "$svc"
            return 1
        fi
        service_ready "$svc" && return 0
        if ((SECONDS >= deadline)); then
            err "$svc did not become ready within ${READY_TIMEOUT}s; see $(rel "$(log_file "$svc")")"
            show_log_tail "$svc"
            return 1
        fi
        sleep 0.25
    done
}

# --------------------------------------------------------------------------------------
# Environment for mailpipe binaries
# --------------------------------------------------------------------------------------

# Settings overrides pointing every mailpipe binary at this stack. Also written to
# <run dir>/env.sh, so `source .run/env.sh` points a shell (cargo test, a stage run by
# hand) at it.
stack_env() {
    cat <<EOF
export MAILPIPE_KAFKA__BROKERS=127.0.0.1:$KAFKA_PORT
export MAILPIPE_CLICKHOUSE__URL=http://127.0.0.1:$CLICKHOUSE_HTTP_PORT
export MAILPIPE_SCHEMA_REGISTRY__URL=http://127.0.0.1:$REGISTRY_PORT$REGISTRY_API_PATH
export MAILPIPE_REDIS__URL=redis://127.0.0.1:$REDIS_PORT
export MAILPIPE_RECEIVER__LISTEN=127.0.0.1:${RECEIVER_PORT:-8080}
export MAILPIPE_DEV_SNS_CERT_URL=http://127.0.0.1:$SNS_CERT_PORT/sns-signing-cert.pem
EOF
}

# Run `mailpipe <subcommand>` (skipped with a warning when mailpipe is not built).
run_mailpipe() {
    local bin=$BIN_DIR/mailpipe
    if [[ ! -x $bin ]]; then
        warn "$bin not found; skipping 'mailpipe $1' (run 'make build')"
        return 0
    fi
    info "==> mailpipe $1"
    if ! (cd "$REPO_ROOT" && env -u MAILPIPE_RUN_DIR "$bin" "$@"); then
        err "'mailpipe $*' failed"
        return 1
    fi
}

# --------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------

# Command-line tool -> Debian package providing it.
APT_NEEDS=(
    "cc:build-essential"
    "make:build-essential"
    "pkg-config:pkg-config"
    "curl:curl"
    "clickhouse-server:clickhouse-server"
    "clickhouse-client:clickhouse-client"
    "redis-server:redis-server"
    "redis-cli:redis-tools"
    "java:openjdk-17-jre-headless"
    "mvn:maven"
    # librdkafka's TLS (rdkafka's "ssl" feature) links the system OpenSSL.
    "/usr/include/openssl/ssl.h:libssl-dev"
    # The console's browser test (make test): Debian's Chromium, never a browser download,
    # and fonts for legible screenshots.
    "chromium:chromium"
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core"
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf:fonts-liberation"
)

cmd_install() {
    # 1. Debian packages. Quiet (no output at all) when everything is present.
    local entry tool pkg missing=()
    for entry in "${APT_NEEDS[@]}"; do
        tool=${entry%%:*}
        pkg=${entry#*:}
        # A tool on PATH, or (starting with /) a file the package installs.
        local present=1
        if [[ $tool == /* ]]; then
            [[ -e $tool ]] || present=0
        else
            command -v "$tool" >/dev/null || present=0
        fi
        if ((!present)); then
            case " ${missing[*]} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
        fi
    done
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null || {
            err "missing ${missing[*]}, and this is not a Debian/Ubuntu system (no apt-get); install them by hand"
            return 1
        }
        info "==> installing ${missing[*]} (apt-get)"
        local apt_log
        apt_log=$(mktemp)
        if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
            cat "$apt_log" >&2
            rm -f "$apt_log"
            err "could not install ${missing[*]}"
            return 1
        fi
        rm -f "$apt_log"
        # On a systemd machine the packages start system-wide servers on the default ports
        # (6379, 8123, 9000); the stack runs its own, so turn the ones we just installed off.
        if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
            for pkg in "${missing[@]}"; do
                case $pkg in
                    redis-server | clickhouse-server)
                        info "    disabling the system $pkg service (the stack runs its own on 127.0.0.1)"
                        as_root systemctl disable --now "$pkg.service" >/dev/null 2>&1 || true
                        ;;
                esac
            done
        fi
    fi

    # 2. Apache Kafka and Apicurio Registry, from Maven Central (Java 17 and Maven came
    # from Debian above if missing; the registry needs a Java 21+ already on the machine).
    install_kafka
    install_registry
}

# Units this invocation of `up` started; stopped again if `up` fails.
STARTED=()

rollback() {
    local i
    ((${#STARTED[@]})) || return 0
    info "stopping what this run started: ${STARTED[*]}" >&2
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        stop_unit "${STARTED[i]}" >&2 || true
    done
    STARTED=()
}

# EXIT trap of `up`: on failure, stop whatever this invocation started.
on_up_exit() {
    local rc=$?
    ((rc == 0)) || rollback
    exit "$rc"
}

cmd_up() {
    trap on_up_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    mkdir -p "$DATA_DIR" "$LOG_DIR" "$PID_DIR" "$CONF_DIR"

    # 1. Backing services, one after the other.
    local svc pid port
    for svc in $SERVICES; do
        if pid=$(running_pid "$svc"); then
            info "$svc already running (pid $pid)"
            continue
        fi
        for port in $(service_ports "$svc"); do
            if port_open "$port"; then
                err "cannot start $svc: port $port on 127.0.0.1 is already in use"
                return 1
            fi
        done
        info "==> starting $svc on 127.0.0.1:$(service_ports "$svc" | tr ' ' ',')"
        start_service "$svc"
        wait_ready "$svc" "$(head -n1 "$(pid_file "$svc")")"
    done

    # 2. Topics and ClickHouse schema, with the settings pointed at this stack.
    stack_env >"$RUN_DIR/env.sh"
    eval "$(stack_env)"
    run_mailpipe create-topics
    run_mailpipe migrate

    # 3. The stages that are built. A stage still running from an earlier `up` is kept,
    # unless its binary was rebuilt since (then it is restarted to pick up the new code).
    local stage bin started_stages=()
    # One instance of each stage, always the same name: a restarted stage's start aborts
    # the transaction its predecessor left open (exactly-once mode).
    local instance=(MAILPIPE_KAFKA__INSTANCE_ID=local)
    for stage in $STAGES; do
        bin=$(unit_binary "$stage")
        [[ -n $bin ]] || continue
        if pid=$(running_pid "$stage"); then
            if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == *" (deleted)" ]]; then
                info "$stage was rebuilt; restarting it"
                stop_unit "$stage"
            else
                info "$stage already running (pid $pid)"
                continue
            fi
        fi
        info "==> starting $stage"
        case $stage in
            sns-cert)
                launch "$stage" env -u MAILPIPE_RUN_DIR "$bin" serve-dev-cert \
                    --listen "127.0.0.1:$SNS_CERT_PORT" \
                    --cert "$REPO_ROOT/config/dev-keys/sns-signing-cert.pem"
                ;;
            verify)
                # Local stack only: accept the http:// loopback certificate URL of the SES
                # samples (never set this against real SNS traffic).
                launch "$stage" env -u MAILPIPE_RUN_DIR "${instance[@]}" \
                    MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK=true "$bin"
                ;;
            rules)
                # Stages run in a directory of their own: the rules file by its full path.
                launch "$stage" env -u MAILPIPE_RUN_DIR "${instance[@]}" \
                    MAILPIPE_RULES__FILE="${MAILPIPE_RULES__FILE:-$REPO_ROOT/config/rules.toml}" "$bin"
                ;;
            *) launch "$stage" env -u MAILPIPE_RUN_DIR "${instance[@]}" "$bin" ;;
        esac
        started_stages+=("$stage")
    done
    # Stages have no common readiness probe; at least catch one that exits right away
    # (bad config, port taken, broker unreachable).
    if ((${#started_stages[@]})); then
        sleep 2
        for stage in "${started_stages[@]}"; do
            if ! pid_alive "$(head -n1 "$(pid_file "$stage")")"; then
                err "$stage exited right after starting; see $(rel "$(log_file "$stage")")"
                show_log_tail "$stage"
                return 1
            fi
        done
    fi

    STARTED=()
    info "stack is up (run directory: $(rel "$RUN_DIR"); 'scripts/stack.sh status' to check, 'scripts/stack.sh down' to stop)"
}

cmd_down() {
    local unit file stages=() extra=() services=() stopped=0
    # Stages first (reverse start order), then the services they use (reverse order).
    for unit in $STAGES; do stages=("$unit" "${stages[@]}"); done
    for unit in $SERVICES; do services=("$unit" "${services[@]}"); done
    # A unit with a pid file that is in neither list (e.g. a stage left out of
    # STACK_STAGES this time) is stopped too, before the services.
    for file in "$PID_DIR"/*.pid; do
        [[ -e $file ]] || continue
        unit=$(basename "$file" .pid)
        case " $SERVICES $STAGES " in *" $unit "*) ;; *) extra+=("$unit") ;; esac
    done

    for unit in "${extra[@]}" "${stages[@]}" "${services[@]}"; do
        # running_pid also removes a stale pid file.
        running_pid "$unit" >/dev/null || continue
        stop_unit "$unit"
        stopped=$((stopped + 1))
    done
    ((stopped)) || info "nothing running (run directory: $(rel "$RUN_DIR"))"
    return 0
}

# Stops the named units (stages or services) only; `up` starts them again.
cmd_stop() {
    local unit
    (($#)) || {
        err "stop: name the units to stop, e.g. scripts/stack.sh stop dedupe"
        return 2
    }
    for unit in "$@"; do
        if running_pid "$unit" >/dev/null; then
            stop_unit "$unit"
        else
            info "$unit is not running"
        fi
    done
}

cmd_status() {
    local unit pid port state all_ok=0
    printf '%-16s %-8s %-12s %s\n' UNIT PID PORT STATE
    for unit in $SERVICES; do
        port=$(service_ports "$unit" | tr ' ' ',')
        if pid=$(running_pid "$unit"); then
            if service_ready "$unit"; then state="running, answers"; else state="running, NOT answering"; all_ok=1; fi
        else
            pid=-
            state="not running"
            all_ok=1
        fi
        printf '%-16s %-8s %-12s %s\n' "$unit" "$pid" "$port" "$state"
    done
    for unit in $STAGES; do
        if pid=$(running_pid "$unit"); then
            state=running
        elif [[ -n $(unit_binary "$unit") ]]; then
            pid=-
            state="not running"
        else
            pid=-
            state="not built"
        fi
        printf '%-16s %-8s %-12s %s\n' "$unit" "$pid" - "$state"
    done
    info "run directory: $(rel "$RUN_DIR")  logs: $(rel "$LOG_DIR")"
    return "$all_ok"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

main() {
    case ${1:-} in
        install) cmd_install ;;
        kafka-exec) cmd_kafka_exec ;;
        up) cmd_up ;;
        down) cmd_down ;;
        stop)
            shift
            cmd_stop "$@"
            ;;
        status) cmd_status ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
