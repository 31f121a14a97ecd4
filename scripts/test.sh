#!/usr/bin/env bash
# scripts/test.sh — `make test`: format and lint checks, then the whole test suite against a
# local stack of its own, which is always stopped at the end.
#
# The test stack has its own run directory (MAILPIPE_TEST_RUN_DIR, default <repo>/.run/test,
# wiped before each run) and the default ports, so a stack from `make up` must be stopped
# first, or the tests pointed at other ports (KAFKA_PORT=... CLICKHOUSE_HTTP_PORT=... etc.).
# It starts the backing services only, no stages (TEST_STACK_STAGES="receiver ..." to add
# some): tests run the stages they need themselves; then the console's browser test with
# every stage running (scripts/test-console.sh). Last comes a short crash test
# (TEST_CHAOS_EVENTS events, default 10000; 0 skips it).
set -euo pipefail

START=$SECONDS
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
STACK=$REPO_ROOT/scripts/stack.sh
TEST_RUN_DIR=${MAILPIPE_TEST_RUN_DIR:-$REPO_ROOT/.run/test}
# mailpipe's settings read every MAILPIPE_* variable as a config key; keep the run
# directory out of the tests' environment (it is passed to stack.sh explicitly).
unset MAILPIPE_RUN_DIR

step() { printf '\n==> %s\n' "$*"; }
stack() { MAILPIPE_RUN_DIR=$TEST_RUN_DIR STACK_STAGES=${TEST_STACK_STAGES-} "$STACK" "$@"; }

STACK_TOUCHED=0
finish() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM
    if ((STACK_TOUCHED)); then
        step "stopping the test stack"
        stack down || true
    fi
    local elapsed=$((SECONDS - START))
    if ((rc == 0)); then
        printf '\ntest: OK in %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
    else
        printf '\ntest: FAILED (exit %d) after %dm%02ds\n' "$rc" $((elapsed / 60)) $((elapsed % 60)) >&2
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "cargo fmt --all --check"
cargo fmt --all --check
# Provider modules are declared by a macro (mailpipe_model::for_each_provider!), which
# cargo fmt does not follow: they are checked by name.
rustfmt --edition 2021 --check crates/*/src/providers/*.rs

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The Prometheus alert rules (and their promtool unit tests) and the Grafana dashboard:
# installs Debian's prometheus package for promtool when missing.
step "deploy/: promtool check and test the alert rules, check the Grafana dashboard"
scripts/check-deploy.sh

step "deploy/: image, compose file, Kubernetes manifests, ACLs (static: schemas and cross-checks)"
scripts/check-k8s.sh

step "starting the test stack (run directory $TEST_RUN_DIR)"
STACK_TOUCHED=1
stack down >/dev/null # leftovers of an interrupted run, if any
rm -rf "$TEST_RUN_DIR/data" "$TEST_RUN_DIR/env.sh"
if ! stack up; then
    printf 'hint: is a stack from "make up" running? "make down" stops it; or give the tests other ports, e.g.\n' >&2
    printf '      KAFKA_PORT=19092 CLICKHOUSE_HTTP_PORT=18123 CLICKHOUSE_TCP_PORT=19000 REDIS_PORT=16379 REGISTRY_PORT=18081 make test\n' >&2
    exit 1
fi
# The other teams' client of the cross-client test (Confluent's Python client), in a
# virtualenv outside the clone; quiet when already there.
tests/python/install.sh
# MAILPIPE_KAFKA__BROKERS, MAILPIPE_CLICKHOUSE__URL, ... pointing at the test stack.
# shellcheck source=/dev/null
source "$TEST_RUN_DIR/env.sh"

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace"
    cargo nextest run --workspace
else
    step "cargo test --workspace"
    cargo test --workspace
fi

# The console against the whole pipeline: every stage and the console started on the test
# stack, known sample traffic, then headless Chromium checks the page against ClickHouse,
# forces an alert (a stage stopped) and sees it resolve. Screenshots: $TEST_RUN_DIR/browser.
step "console browser test: scripts/test-console.sh"
MAILPIPE_RUN_DIR=$TEST_RUN_DIR scripts/test-console.sh

# A short crash test on every run: the whole pipeline (receiver and every stage as its
# own process) takes sample traffic while a random process is SIGKILLed every 2-6 s and
# restarted; every event must reach ClickHouse exactly once. `make chaos` runs the same
# test with 100,000 events, plus the per-stage kill tests.
TEST_CHAOS_EVENTS=${TEST_CHAOS_EVENTS:-10000}
if ((TEST_CHAOS_EVENTS > 0)); then
    step "short crash test: tests/tests/it/chaos.rs with CHAOS_EVENTS=$TEST_CHAOS_EVENTS"
    CHAOS_EVENTS=$TEST_CHAOS_EVENTS cargo test -p mailpipe-tests --test it -- chaos:: \
        --ignored --nocapture --test-threads=1
fi
