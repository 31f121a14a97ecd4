#!/usr/bin/env bash
# tests/python/install.sh — the Python virtualenv of the cross-client test, outside the
# clone (default ~/.cache/mailpipe/python-venv, MAILPIPE_TEST_VENV). Idempotent and quiet
# when it is up to date with requirements.txt. Prints nothing else; exits non-zero on failure.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${MAILPIPE_TEST_VENV:-$HOME/.cache/mailpipe/python-venv}
STAMP=$VENV/.requirements
if [[ -x $VENV/bin/python ]] && cmp -s "$HERE/requirements.txt" "$STAMP"; then
    exit 0
fi
echo "==> installing the cross-client test's Python packages into $VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
cp "$HERE/requirements.txt" "$STAMP"
