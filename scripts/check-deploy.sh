#!/usr/bin/env bash
# scripts/check-deploy.sh — checks the monitoring files under deploy/ (part of `make test`):
#   1. promtool check rules   deploy/prometheus/alerts.yml
#   2. promtool test rules    deploy/prometheus/alerts_test.yml
#   3. promtool check config  deploy/prometheus/prometheus.yml
#   4. the Grafana dashboard (deploy/grafana/mailpipe.json): valid JSON with panels and
#      queries, every query valid PromQL (checked by promtool with Grafana's variables
#      replaced by sample values)
#   5. metric names: every `mailpipe_*` name in alerts.yml and in the dashboard's queries is
#      a metric declared in crates/mailpipe-telemetry/src/names.rs; histogram series
#      (`_bucket`, `_sum`, `_count`) count as their histogram.
# DEPLOY_RULES and DEPLOY_DASHBOARD check other files in place of alerts.yml and the
# dashboard in steps 1, 4 and 5 (to try a change, or to see a broken copy fail).
# promtool comes from Debian's `prometheus` package, installed here when missing (without
# starting the Prometheus server it ships). Exit status non-zero on any failure.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

RULES=${DEPLOY_RULES:-deploy/prometheus/alerts.yml}
RULE_TESTS=deploy/prometheus/alerts_test.yml
CONFIG=deploy/prometheus/prometheus.yml
DASHBOARD=${DEPLOY_DASHBOARD:-deploy/grafana/mailpipe.json}
NAMES=crates/mailpipe-telemetry/src/names.rs

# Removed on exit, whatever happens: the scratch directory, and a policy-rc.d this script
# put in place for the install.
WORK=$(mktemp -d)
ADDED_POLICY=
cleanup_policy() {
    if [[ -n $ADDED_POLICY ]]; then
        as_root rm -f "$ADDED_POLICY" && echo "    removed $ADDED_POLICY again"
        ADDED_POLICY=
    fi
}
cleanup() {
    cleanup_policy
    rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '==> %s\n' "$*"; }
err() { printf 'check-deploy: %s\n' "$*" >&2; }

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

# Installs Debian's prometheus package for its promtool. Its maintainer scripts would start
# a Prometheus server on :9090: a policy-rc.d that denies every start (unless the machine
# already has one) keeps invoke-rc.d from doing so, and a server started anyway (systemd)
# is stopped and disabled again.
install_promtool() {
    command -v apt-get >/dev/null || {
        err "promtool is missing and this is not a Debian/Ubuntu system: install Prometheus' promtool by hand"
        return 1
    }
    step "installing promtool (apt-get install --no-install-recommends prometheus)"
    local policy=/usr/sbin/policy-rc.d log=$WORK/apt.log rc=0
    if [[ ! -e $policy ]]; then
        ADDED_POLICY=$policy
        printf '#!/bin/sh\n# written by mailpipe scripts/check-deploy.sh for one install\nexit 101\n' |
            as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        echo "    added $policy (exit 101) so the package starts no service"
    fi
    apt_install() {
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends prometheus >>"$log" 2>&1
    }
    if ! apt_install; then
        echo "    install failed; running apt-get update and trying again"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$log" 2>&1 && apt_install || rc=$?
    fi
    cleanup_policy
    if ((rc)); then
        cat "$log" >&2
        err "could not install the prometheus package"
        return 1
    fi
    # Only promtool is wanted: no Prometheus server, now or at boot.
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
        echo "    disabled and stopped the system prometheus.service"
    elif [[ -x /etc/init.d/prometheus ]] && as_root /etc/init.d/prometheus status >/dev/null 2>&1; then
        as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        echo "    stopped the prometheus service the package started"
    fi
    command -v promtool >/dev/null || {
        err "the prometheus package is installed but promtool is not on PATH"
        return 1
    }
    echo "    $(promtool --version 2>&1 | head -n 1)"
}

command -v promtool >/dev/null || install_promtool

failed=()

step "promtool check rules $RULES"
promtool check rules "$RULES" || failed+=("check rules")

step "promtool test rules $RULE_TESTS"
promtool test rules "$RULE_TESTS" || failed+=("test rules")

step "promtool check config $CONFIG"
promtool check config "$CONFIG" || failed+=("check config")

DASHBOARD_EXPRS=$WORK/dashboard-queries.yml

step "dashboard $DASHBOARD; metric names in it and in $RULES against $NAMES"
python3 - "$NAMES" "$RULES" "$DASHBOARD" "$DASHBOARD_EXPRS" <<'PY' || failed+=("dashboard and metric names")
import glob
import json
import re
import sys

names_path, rules_path, dashboard_path, exprs_path = sys.argv[1:5]
ok = True

with open(names_path, encoding="utf-8") as f:
    names_rs = f.read()
declared = set(re.findall(r'"(mailpipe_[a-z0-9_]+)"', names_rs))
if not declared:
    print(f"no metric names found in {names_path}")
    sys.exit(1)
# Histograms are exported as _bucket, _sum, _count: the names described with
# describe_histogram! in names.rs or recorded with histogram!(names::X) in any crate.
constants = dict(re.findall(r'pub const (\w+): &str =\s*"(mailpipe_\w+)"', names_rs))
histogram_constants = set(re.findall(r"describe_histogram!\(\s*(\w+)", names_rs))
for source in glob.glob("crates/*/src/**/*.rs", recursive=True):
    with open(source, encoding="utf-8") as f:
        histogram_constants.update(re.findall(r"histogram!\(\s*names::(\w+)", f.read()))
histograms = {constants[c] for c in histogram_constants if c in constants}
if not histograms:
    print(f"no histograms found in {names_path}")
    sys.exit(1)

METRIC = re.compile(r"\bmailpipe_[a-zA-Z0-9_]*")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def undeclared(text):
    """The mailpipe_* names in text that names.rs does not declare."""
    missing = set()
    for name in METRIC.findall(text):
        if name in declared:
            continue
        base = next(
            (name[: -len(s)] for s in HISTOGRAM_SERIES if name.endswith(s)), None
        )
        if base is None or base not in histograms:
            missing.add(name)
    return missing


# Alert rules: the whole file, so a name in a description is checked too (`up` and the
# other Prometheus names do not start with mailpipe_).
with open(rules_path, encoding="utf-8") as f:
    rules_text = f.read()
missing = undeclared(rules_text)
if not METRIC.search(rules_text):
    print(f"{rules_path}: names no mailpipe metric")
    ok = False
for name in sorted(missing):
    print(f"{rules_path}: {name} is not declared in {names_path}")
    ok = False


# Dashboard: every panel, nested in rows or not, and each of its targets' expr.
def panels_of(container):
    for panel in container.get("panels", []) or []:
        yield panel
        yield from panels_of(panel)


try:
    with open(dashboard_path, encoding="utf-8") as f:
        dashboard = json.load(f)
except (OSError, ValueError) as e:
    print(f"{dashboard_path}: cannot be read as JSON: {e}")
    sys.exit(1)
if not isinstance(dashboard, dict):
    print(f"{dashboard_path}: not a dashboard object")
    sys.exit(1)

# Grafana's variables, replaced by sample values so that promtool can parse the queries:
# $__rate_interval and the other built-in durations by a duration, $stage & co (used in
# regex matchers) by a regex.
def as_promql(expr):
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?", ".*", expr)


panels = rows = queries = 0
used = set()
recording_rules = []
for panel in panels_of(dashboard):
    if panel.get("type") == "row":
        rows += 1
        continue
    panels += 1
    panel_missing = set()
    for target in panel.get("targets", []) or []:
        expr = target.get("expr", "")
        if not expr:
            continue
        queries += 1
        used.update(METRIC.findall(expr))
        recording_rules.append(
            {"record": f"dashboard_query_{queries}", "expr": as_promql(expr)}
        )
        panel_missing |= undeclared(expr)
    for name in sorted(panel_missing):
        print(f'{dashboard_path}: panel "{panel.get("title", "?")}": {name} is not declared in {names_path}')
        ok = False
if panels == 0 or queries == 0:
    print(f"{dashboard_path}: {panels} panels, {queries} queries: an empty dashboard")
    ok = False

# JSON is YAML: one group of recording rules for `promtool check rules` to parse.
if recording_rules:
    with open(exprs_path, "w", encoding="utf-8") as f:
        json.dump({"groups": [{"name": "dashboard", "rules": recording_rules}]}, f, indent=1)

if ok:
    print(
        f"ok: {rows} rows, {panels} panels, {queries} queries naming {len(used)} metrics; "
        f"those and every metric named in {rules_path} are declared in {names_path} "
        f"({len(declared)} names)"
    )
sys.exit(0 if ok else 1)
PY

if [[ -s $DASHBOARD_EXPRS ]]; then
    step "dashboard queries parse as PromQL (promtool check rules)"
    promtool check rules "$DASHBOARD_EXPRS" >"$WORK/promtool.log" 2>&1 && tail -n 2 "$WORK/promtool.log" || {
        cat "$WORK/promtool.log"
        failed+=("dashboard PromQL")
    }
fi

if ((${#failed[@]})); then
    err "FAILED: ${failed[*]}"
    exit 1
fi
step "deploy checks passed"
