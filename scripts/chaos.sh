#!/usr/bin/env bash
# scripts/chaos.sh — `make chaos`: the kill tests, which SIGKILL stage processes mid-stream
# and check that nothing is lost. They are #[ignore]d in `make test` because each loads the
# local broker for minutes (the dedupe kill test: 50,000 events, ~3 min on 2 cores; the
# aggregate kill test: 100,000 events, ~3 min), enough to make other tests' produce calls
# time out when run next to them. Last, the chaos test (tests/tests/chaos.rs): the whole
# pipeline takes `mailpipe send-samples` traffic (CHAOS_EVENTS, default 100,000 events,
# 10 % of requests posted twice) while a random process is SIGKILLed every 2-6 s and
# restarted; it prints sent / unique / in ClickHouse / lost / duplicated.
#
# Needs the stage binaries (`make build`; `make chaos` builds them). Runs against a stack of
# its own (run directory MAILPIPE_CHAOS_RUN_DIR, default <repo>/.run/chaos, fresh data;
# ports as for scripts/stack.sh), always stopped at the
# end — or, when MAILPIPE_KAFKA__BROKERS is already set (a stack's env.sh sourced), against
# that stack. CHAOS_TESTS="chaos" runs only the named test targets. DEDUPE_KILL_SEED /
# DEDUPE_KILL_COUNT, AGG_KILL_SEED / AGG_KILL_COUNT and CHAOS_EVENTS / CHAOS_SEED /
# CHAOS_DUPLICATES / CHAOS_DRAIN_SECONDS tune the tests.
set -euo pipefail

START=$SECONDS
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
STACK=$REPO_ROOT/scripts/stack.sh
CHAOS_RUN_DIR=${MAILPIPE_CHAOS_RUN_DIR:-$REPO_ROOT/.run/chaos}
# The integration-test targets holding the kill tests, in this order.
read -r -a CHAOS_TESTS <<<"${CHAOS_TESTS:-dedupe_kill aggregate_kill chaos}"
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
    step "cargo test -p mailpipe-tests --test $test -- --ignored"
    cargo test -p mailpipe-tests --test "$test" -- --ignored --nocapture --test-threads=1
done
