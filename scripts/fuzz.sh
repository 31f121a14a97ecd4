#!/usr/bin/env bash
# scripts/fuzz.sh — `make fuzz`: runs every cargo-fuzz target of the parsers of untrusted
# bytes (crates/*/fuzz: the verifiers, the normalizers, the event datum decoder, and whole
# HTTP requests through the receiver's router),
# FUZZ_SECONDS each (default 30), and prints one line per target. A crash stops the run with the reproducer's path.
#
# Needs a nightly toolchain and cargo-fuzz; both are installed if missing (rustup, crates.io).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${FUZZ_SECONDS:-30}
export PATH=$HOME/.cargo/bin:$PATH
# Fuzz builds use their own target dir: sanitizer flags would invalidate the shared one.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/mailpipe/fuzz-target}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "==> installing the nightly toolchain (for libFuzzer)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

for crate_dir in "$REPO_ROOT"/crates/*/; do
    [[ -d $crate_dir/fuzz ]] || continue
    cd "$crate_dir"
    for target in $(cargo +nightly fuzz list); do
        log=$(mktemp)
        if cargo +nightly fuzz run "$target" -O -- -max_total_time="$SECONDS_EACH" >"$log" 2>&1; then
            runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -n 1 || true)
            printf '%-32s ok   %s in %ss\n' "$(basename "$crate_dir")/$target" "${runs:-?}" "$SECONDS_EACH"
        else
            printf '%-32s FAILED\n' "$(basename "$crate_dir")/$target"
            tail -n 30 "$log"
            exit 1
        fi
        rm -f "$log"
    done
done
