#!/usr/bin/env bash
# scripts/chaos.sh — `make chaos`: the kill tests, which SIGKILL stage processes mid-stream
# and check that nothing is lost. They are #[ignore]d in `make test` because each loads the
# local broker for minutes, enough to make other tests' produce calls time out when run next
# to them. First the kill tests of the stages that read a topic and write topics
# (tests/tests/it/{verify,normalize,dedupe,rules}_kill.rs, harness crates/mailpipe-test-support/src/
# kill.rs): the stage binary takes 30,000-50,000 inputs while it is SIGKILLed at least 5 times at
# seeded random points and restarted with the same instance id; its output topics, read
# read_committed, must hold every expected output exactly once (0 missing, 0 extra) with
# each key's outputs in input order. Then the aggregate kill test (100,000 events, counts in
# ClickHouse). Last, the chaos test (tests/tests/it/chaos.rs): the whole pipeline takes
# `mailpipe send-samples` traffic (CHAOS_EVENTS, default 100,000 events, 10 % of requests
# posted twice) while a random process is SIGKILLed every 2-6 s and restarted; it prints
# sent / unique / in ClickHouse / lost / duplicated and checks mail.events.unique, read
# read_committed, holds each accepted event id exactly once.
#
# Needs the stage binaries (`make build`; `make chaos` builds them). Runs against a stack of
# its own (run directory MAILPIPE_CHAOS_RUN_DIR, default <repo>/.run/chaos, fresh data;
# ports as for scripts/stack.sh), always stopped at the
# end — or, when MAILPIPE_KAFKA__BROKERS is already set (a stack's env.sh sourced), against
# that stack. CHAOS_TESTS="chaos" runs only the named test files (modules of the
# integration-test binary `it`). VERIFY_KILL_SEED /
# VERIFY_KILL_COUNT, NORMALIZE_KILL_SEED / NORMALIZE_KILL_COUNT, DEDUPE_KILL_SEED /
# DEDUPE_KILL_COUNT, AGG_KILL_SEED / AGG_KILL_COUNT and CHAOS_EVENTS / CHAOS_SEED /
# CHAOS_DUPLICATES / CHAOS_DRAIN_SECONDS tune the tests. MAILPIPE_KAFKA__EXACTLY_ONCE=false
# runs the stages' at-least-once path instead (the kill tests and chaos then allow extra
# copies, still no loss).
set -euo pipefail

START=$SECONDS
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
STACK=$REPO_ROOT/scripts/stack.sh
CHAOS_RUN_DIR=${MAILPIPE_CHAOS_RUN_DIR:-$REPO_ROOT/.run/chaos}
# The files (modules of the integration-test binary `it`) holding the kill tests, in this
# order; each runs alone, by a module filter, one test at a time.
read -r -a CHAOS_TESTS <<<"${CHAOS_TESTS:-verify_kill normalize_kill dedupe_kill aggregate_kill rules_kill chaos}"
# mailpipe's settings read every MAILPIPE_* variable as a config key.
unset MAILPIPE_RUN_DIR

step() { printf '\n==> %s\n' "$*"; }
stack() {
    MAILPIPE_RUN_DIR=$CHAOS_RUN_DIR STACK_STAGES='' "$STACK" "$@"
}

STACK_TOUCHED=0
finish() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM
    if ((STACK_TOUCHED)); then
        step "stopping the chaos stack"
        stack down || true
    fi
    local elapsed=$((SECONDS - START))
    if ((rc == 0)); then
        printf '\nchaos: OK in %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
    else
        printf '\nchaos: FAILED (exit %d) after %dm%02ds\n' "$rc" $((elapsed / 60)) $((elapsed % 60)) >&2
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n ${MAILPIPE_KAFKA__BROKERS:-} ]]; then
    step "using the running stack (broker $MAILPIPE_KAFKA__BROKERS)"
else
    step "starting the chaos stack (run directory $CHAOS_RUN_DIR)"
    STACK_TOUCHED=1
    stack down >/dev/null # leftovers of an interrupted run, if any
    rm -rf "$CHAOS_RUN_DIR/data" "$CHAOS_RUN_DIR/env.sh"
    stack up
    # shellcheck source=/dev/null
    source "$CHAOS_RUN_DIR/env.sh"
fi

for test in "${CHAOS_TESTS[@]}"; do
    # A filter that matches nothing would pass silently: refuse a name with no file.
    if [[ ! -f tests/tests/it/$test.rs ]]; then
        printf 'chaos: no test file tests/tests/it/%s.rs (CHAOS_TESTS)\n' "$test" >&2
        exit 2
    fi
    step "cargo test -p mailpipe-tests --test it -- $test:: --ignored"
    cargo test -p mailpipe-tests --test it -- "$test::" --ignored --nocapture --test-threads=1
done
