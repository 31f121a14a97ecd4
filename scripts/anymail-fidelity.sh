#!/usr/bin/env bash
# Compares mailpipe's normalization with django-anymail's on anymail's own webhook tests
# (issue 21). Not part of CI: it needs a django-anymail checkout and PyPI.
#
#   scripts/anymail-fidelity.sh /path/to/django-anymail [report.json]
#
# Builds `mailpipe` (debug), installs Django, anymail (from the checkout) and its test
# dependencies into a virtualenv under ~/.cache/mailpipe/anymail-venv, runs anymail's webhook
# tests unchanged while recording what anymail made of every request it accepted, and runs
# each request through `mailpipe inspect`. Prints, per provider, the events compared, how
# many agree on the event type and how many on every compared field, then each difference.
set -euo pipefail

ANYMAIL_DIR=${1:?usage: scripts/anymail-fidelity.sh /path/to/django-anymail [report.json]}
REPORT=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${MAILPIPE_CACHE:-$HOME/.cache/mailpipe}/anymail-venv
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

echo "==> building mailpipe" >&2
(cd "$ROOT" && cargo build -q -p mailpipe --bin mailpipe)

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV" >&2
    python3 -m venv "$VENV"
fi
echo "==> installing Django, anymail (from $ANYMAIL_DIR) and its test dependencies" >&2
"$VENV/bin/pip" install -q "django>=5.2,<6" responses boto3 cryptography svix -e "$ANYMAIL_DIR"

cd "$ANYMAIL_DIR"
exec "$VENV/bin/python" "$ROOT/scripts/anymail_fidelity.py" "$TARGET/debug/mailpipe" $REPORT
