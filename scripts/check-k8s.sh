#!/usr/bin/env bash
# scripts/check-k8s.sh — static checks of the deployment files (part of `make test`); no
# container engine and no cluster needed, nothing downloaded at check time but packages
# from the registries, cached under ~/.cache/mailpipe/deploy-tools on the first run:
#   1. image: deploy/docker/Dockerfile parsed by BuildKit's Dockerfile frontend (Go module,
#      built here) with its linter; every binary it builds is a [[bin]] of the workspace
#      and every [[bin]] is in the image; the entrypoint's commands name those binaries;
#      the final stage runs as a non-root user; the files it copies exist and are not
#      excluded by .dockerignore; the entrypoint parses (sh -n).
#   2. compose: deploy/compose.yaml loaded by compose-go (the library of `docker compose`,
#      Go module, built here): Compose schema, interpolation, depends_on targets; then every
#      mailpipe service's command is an entrypoint command, health probes use the stage's
#      port, published ports are unique.
#   3. Kubernetes: deploy/k8s rendered by `kubectl kustomize` (when kubectl is present,
#      else the resources listed in kustomization.yaml), every object validated against the
#      Kubernetes JSON schemas of PyPI's kubernetes-validate (strict: unknown fields fail)
#      for Kubernetes 1.31 and 1.37, KEDA ScaledObjects against the CRD schema of the KEDA
#      Go module (strict too); then cross-checks: containers run entrypoint commands,
#      probes on the right ports, requests and limits set, StatefulSet stages take their
#      pod name as instance id, ScaledObjects name the stage's group and input topic and
#      cap replicas at its partitions, PDBs select a workload, the Ingress body limit is
#      [receiver] max_body_bytes, no secret in a ConfigMap.
#   4. every MAILPIPE_<SECTION>__<KEY> variable in the image, compose file and manifests
#      names a setting of crates/mailpipe-settings/src/defaults.toml.
#   5. deploy/k8s/prometheus-scrape.yml: `promtool check config`, with a promtool built
#      from the Prometheus Go module (Debian's has no Kubernetes service discovery).
#   6. deploy/kafka-acls/acls.sh (DRY_RUN): every stage's group, inputs and transactional
#      ids are granted, and no reader principal gets near mail.raw.
# Exit status non-zero on any failure. Idempotent; seconds once the tools are cached.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

TOOLS=${MAILPIPE_DEPLOY_TOOLS:-$HOME/.cache/mailpipe/deploy-tools}
VENV=$TOOLS/venv
KUBERNETES_VALIDATE_VERSION=1.37.0
COMPOSE_GO_VERSION=v2.16.2
KEDA_VERSION=v2.18.3
PROMETHEUS_MODULE_VERSION=v0.316.0 # Prometheus 3.16's promtool
BUILDKIT_VERSION=v0.34.2
K8S_VERSIONS="1.31 1.37"

step() { printf '==> %s\n' "$*"; }
err() { printf 'check-k8s: %s\n' "$*" >&2; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$TOOLS"

# --- tools (each installed once; a marker file says it is complete) ---------------------

need_go() {
    command -v go >/dev/null || {
        err "the go command is missing: it builds the compose loader and promtool, and fetches the KEDA CRDs (Go module proxy)"
        exit 1
    }
}

install_venv() {
    [[ -f $VENV/.complete-$KUBERNETES_VALIDATE_VERSION ]] && return 0
    step "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV (PyPI)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >"$WORK/pip.log" 2>&1 ||
        { cat "$WORK/pip.log" >&2; err "pip install failed"; exit 1; }
    touch "$VENV/.complete-$KUBERNETES_VALIDATE_VERSION"
}

# compose-go's loader: schema validation, interpolation, extends/anchors, depends_on.
# Prints the resolved project as JSON.
install_compose_loader() {
    local dir=$TOOLS/compose-loader-$COMPOSE_GO_VERSION
    COMPOSE_LOADER=$dir/compose-loader
    [[ -x $COMPOSE_LOADER ]] && return 0
    need_go
    step "building the compose loader (github.com/compose-spec/compose-go/v2 $COMPOSE_GO_VERSION)"
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/main.go" <<'GO'
// compose-loader: loads compose files as `docker compose config` does (compose-go) and
// prints the resolved project as JSON; exit 1 with the loader's error otherwise.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	options, err := cli.NewProjectOptions(os.Args[1:], cli.WithName("mailpipe"), cli.WithOsEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
GO
    (
        cd "$dir"
        go mod init mailpipe/compose-loader >/dev/null 2>&1
        go get "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION" >build.log 2>&1 &&
            go mod tidy >>build.log 2>&1 &&
            go build -o compose-loader . >>build.log 2>&1
    ) || { cat "$dir/build.log" >&2; rm -f "$COMPOSE_LOADER"; err "building the compose loader failed"; exit 1; }
}

# BuildKit's Dockerfile frontend (what `docker build` parses with): syntax, instruction
# flags, stages, and its linter's warnings.
install_dockerfile_parser() {
    local dir=$TOOLS/dockerfile-parser-$BUILDKIT_VERSION
    DOCKERFILE_PARSER=$dir/dockerfile-parser
    [[ -x $DOCKERFILE_PARSER ]] && return 0
    need_go
    step "building the Dockerfile parser (github.com/moby/buildkit $BUILDKIT_VERSION)"
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/main.go" <<'GO'
// dockerfile-parser: parses a Dockerfile with BuildKit's frontend parser and instruction
// parser, printing its stages; exit 1 on a parse error, 2 on a linter warning.
package main

import (
	"fmt"
	"os"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	res, err := parser.Parse(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	warnings := 0
	lint := linter.New(&linter.Config{Warn: func(rule, desc, url, msg string, loc []parser.Range) {
		warnings++
		fmt.Printf("lint %s: %s (line %d)\n", rule, msg, loc[0].Start.Line)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, s := range stages {
		fmt.Printf("stage %s FROM %s, %d instructions; ", s.Name, s.BaseName, len(s.Commands))
	}
	fmt.Println()
	if warnings > 0 {
		os.Exit(2)
	}
}
GO
    (
        cd "$dir"
        go mod init mailpipe/dockerfile-parser >/dev/null 2>&1
        go get "github.com/moby/buildkit@$BUILDKIT_VERSION" >build.log 2>&1 &&
            go mod tidy >>build.log 2>&1 &&
            go build -o dockerfile-parser . >>build.log 2>&1
    ) || { cat "$dir/build.log" >&2; rm -f "$DOCKERFILE_PARSER"; err "building the Dockerfile parser failed"; exit 1; }
}

# The KEDA module's config/crd/bases holds the CRDs as the operator installs them.
fetch_keda_crds() {
    local marker=$TOOLS/keda-$KEDA_VERSION.dir
    if [[ -f $marker ]] && [[ -d $(cat "$marker") ]]; then
        KEDA_CRDS=$(cat "$marker")/config/crd/bases
        return 0
    fi
    need_go
    step "fetching the KEDA CRDs (Go module github.com/kedacore/keda/v2 $KEDA_VERSION)"
    local dir
    dir=$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') ||
        { err "go mod download of the KEDA module failed"; exit 1; }
    printf '%s' "$dir" >"$marker"
    KEDA_CRDS=$dir/config/crd/bases
}

install_promtool() {
    local dir=$TOOLS/promtool-$PROMETHEUS_MODULE_VERSION
    PROMTOOL=$dir/promtool
    [[ -x $PROMTOOL ]] && return 0
    need_go
    step "building promtool (github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION; a few minutes, once)"
    mkdir -p "$dir"
    GOBIN=$dir go install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" >"$dir/build.log" 2>&1 ||
        { cat "$dir/build.log" >&2; rm -f "$PROMTOOL"; err "building promtool failed"; exit 1; }
}

install_venv
install_compose_loader
install_dockerfile_parser
fetch_keda_crds
install_promtool

failed=()

# --- 1. image: BuildKit parses the Dockerfile (the rest of 1 is in the Python part) -------
step "image: BuildKit $BUILDKIT_VERSION parses deploy/docker/Dockerfile (syntax, flags, stages, lint)"
if "$DOCKERFILE_PARSER" deploy/docker/Dockerfile >"$WORK/dockerfile.out" 2>&1; then
    echo "    ok: $(cat "$WORK/dockerfile.out")"
else
    cat "$WORK/dockerfile.out" >&2
    failed+=("Dockerfile parse")
fi

# --- 2. compose: load it (the structural checks are in the Python part) -----------------
step "compose: compose-go $COMPOSE_GO_VERSION loads deploy/compose.yaml (Compose schema, interpolation, depends_on)"
if (cd deploy && "$COMPOSE_LOADER" compose.yaml >"$WORK/compose.json" 2>"$WORK/compose.err"); then
    echo "    ok: $(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(len(p["services"]), "services:", " ".join(sorted(p["services"])))' "$WORK/compose.json")"
else
    cat "$WORK/compose.err" >&2
    failed+=("compose load")
    echo '{"services": {}}' >"$WORK/compose.json"
fi

# --- 3. Kubernetes: render ----------------------------------------------------------------
step "kubernetes: render deploy/k8s"
if command -v kubectl >/dev/null; then
    kubectl kustomize deploy/k8s >"$WORK/rendered.yaml" 2>"$WORK/kustomize.err" ||
        { cat "$WORK/kustomize.err" >&2; failed+=("kustomize"); : >"$WORK/rendered.yaml"; }
    echo "    kubectl kustomize: $(grep -c '^kind:' "$WORK/rendered.yaml") objects"
else
    echo "    kubectl not found: the files listed in kustomization.yaml, unrendered"
    : >"$WORK/rendered.yaml"
fi

# --- the checks in Python: 1, 2 (structure), 3 (schemas and cross-checks), 4, 6 ---------
step "image, compose, manifests, settings, ACLs"
DRY_RUN=1 BOOTSTRAP=broker:9093 deploy/kafka-acls/acls.sh >"$WORK/acls.txt" 2>&1 || failed+=("acls.sh dry run")
"$VENV/bin/python" - "$WORK" "$KEDA_CRDS" "$K8S_VERSIONS" <<'PY' || failed+=("deploy checks")
import glob
import json
import os
import re
import subprocess
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml

work, keda_crds, k8s_versions = sys.argv[1], sys.argv[2], sys.argv[3].split()
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


section_start = 0


def ok(what):
    """Reports a section: ok when it added no problem (they are listed at the end)."""
    global section_start
    found = len(problems) - section_start
    print(f"    ok: {what}" if not found else f"    FAILED ({found} problems, below): {what}")
    section_start = len(problems)


# ---------------------------------------------------------------- the workspace's facts
root = tomllib.load(open("Cargo.toml", "rb"))
members = []
for pattern in root["workspace"]["members"]:
    members += [d for d in sorted(glob.glob(pattern)) if os.path.isfile(f"{d}/Cargo.toml")]
bins = set()
for member in members:
    manifest = tomllib.load(open(f"{member}/Cargo.toml", "rb"))
    package = manifest.get("package", {})
    explicit = {b.get("path", "") for b in manifest.get("bin", [])}
    for b in manifest.get("bin", []):
        bins.add(b["name"])
    if package.get("autobins", True):
        # src/main.rs is the package-named binary unless a [[bin]] claims that file.
        if os.path.isfile(f"{member}/src/main.rs") and "src/main.rs" not in explicit:
            bins.add(package["name"])
        bins.update(os.path.basename(p)[:-3] for p in glob.glob(f"{member}/src/bin/*.rs"))
if "mailpipe" not in bins or "mailpipe-receiver" not in bins:
    problem("Cargo.toml", f"workspace binaries not found (found {sorted(bins)})")

defaults = tomllib.load(open("crates/mailpipe-settings/src/defaults.toml", "rb"))
partitions = defaults["kafka"]["partitions"]
metrics_default = defaults["telemetry"]["metrics_listen"]
max_body = defaults["receiver"]["max_body_bytes"]

# Stage inputs, from crates/mailpipe-stage/src/lib.rs (`Stage::inputs`) and the topic
# names of crates/mailpipe-kafka.
stage_rs = open("crates/mailpipe-stage/src/lib.rs", encoding="utf-8").read()
inputs_fn = stage_rs[stage_rs.index("pub fn inputs"):]
inputs_fn = inputs_fn[: inputs_fn.index("\n    }\n")]
stage_inputs = {}
for stage, body in re.findall(r"Stage::(\w+) => (&\[[^\]]*\])", inputs_fn):
    stage_inputs[stage.lower()] = re.findall(r"Topic::(\w+)", body)
topic_names = {}
for path in glob.glob("crates/mailpipe-kafka/src/*.rs"):
    text = open(path, encoding="utf-8").read()
    for variant, name in re.findall(r'Topic::(\w+) => "(mail\.[a-z._]+)"', text):
        topic_names[variant] = name
if len(stage_inputs) != 6 or not topic_names:
    problem("crates/mailpipe-stage", f"could not read Stage::inputs ({stage_inputs}) or topic names ({topic_names})")
partition_key = lambda topic: topic.removeprefix("mail.").replace(".", "_")

STAGES = ["verify", "normalize", "dedupe", "aggregate", "rules", "deliver"]
EXACTLY_ONCE = {"verify", "normalize", "dedupe", "rules"}


def setting_exists(var):
    """MAILPIPE_<SECTION>__<KEY> names a key of defaults.toml ([sources] is free-form)."""
    path = var.removeprefix("MAILPIPE_").lower().split("__")
    if path[0] == "sources":
        return len(path) >= 3
    node = defaults
    for part in path:
        if not isinstance(node, dict):
            return False
        if part not in node:
            # Free-form tables, empty in the defaults: [kafka.librdkafka] and the like.
            return node == {}
        node = node[part]
    return not isinstance(node, dict)


def check_env(where, names):
    for name in names:
        if name.startswith("MAILPIPE_") and "__" in name and not setting_exists(name):
            problem(where, f"{name} is not a setting (crates/mailpipe-settings/src/defaults.toml)")


# ---------------------------------------------------------------- 1. image
dockerfile = open("deploy/docker/Dockerfile", encoding="utf-8").read()
lines = []
for line in dockerfile.replace("\\\n", " ").splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
        lines.append(line)
m = re.search(r'ARG MAILPIPE_BINARIES="([^"]+)"', dockerfile)
image_bins = set(m.group(1).split()) if m else set()
if not image_bins:
    problem("Dockerfile", "no ARG MAILPIPE_BINARIES list")
for b in sorted(image_bins - bins):
    problem("Dockerfile", f"builds {b}, which is not a [[bin]] of the workspace")
for b in sorted(bins - image_bins - {"mailpipe-tests"}):
    problem("Dockerfile", f"the workspace binary {b} is not in the image")
stages = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
final = lines[stages[-1]:] if stages else []
users = [l.split(None, 1)[1] for l in final if l.upper().startswith("USER ")]
if not users or users[-1].split(":")[0] in ("0", "root"):
    problem("Dockerfile", f"the final stage does not run as a non-root user (USER {users[-1] if users else 'missing'})")
entry = [l for l in final if l.upper().startswith("ENTRYPOINT ")]
entry_cmd = json.loads(entry[-1].split(None, 1)[1])[0] if entry else None
copies = {}
for l in final:
    if l.upper().startswith("COPY ") and "--from" not in l:
        src, dst = l.split()[1:3]
        copies[dst] = src
        if not os.path.exists(src.rstrip("/")):
            problem("Dockerfile", f"COPY {src}: no such file in the repository")
if entry_cmd not in copies and os.path.dirname(entry_cmd or "") + "/" not in copies:
    problem("Dockerfile", f"ENTRYPOINT {entry_cmd} is not copied into the final stage")
ignored = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
for src in copies.values():
    for pattern in ignored:
        if src.rstrip("/") == pattern.rstrip("/") or src.startswith(pattern.rstrip("/") + "/"):
            problem(".dockerignore", f"excludes {src}, which the Dockerfile copies")
for pattern in ("config/mailpipe.toml", "config/dev-keys/", "target/", ".run/"):
    if pattern not in ignored:
        problem(".dockerignore", f"does not exclude {pattern}")
image_env = dict(re.findall(r"(MAILPIPE_[A-Z0-9_]+)=(\S+)", " ".join(l for l in final if l.upper().startswith("ENV "))))
check_env("Dockerfile ENV", image_env)

entrypoint_path = copies.get(entry_cmd, "deploy/docker/entrypoint.sh")
entrypoint = open(entrypoint_path, encoding="utf-8").read()
if subprocess.run(["sh", "-n", entrypoint_path]).returncode != 0:
    problem(entrypoint_path, "does not parse (sh -n)")
if not os.access(entrypoint_path, os.X_OK):
    problem(entrypoint_path, "is not executable")
arm = re.search(r"^\s*((?:[a-z]+ \| )+[a-z]+)\)\s*\n\s*shift\s*\n\s*exec \"/usr/local/bin/mailpipe-\$command\"", entrypoint, re.M)
entry_stages = set(arm.group(1).split(" | ")) if arm else set()
if not entry_stages:
    problem(entrypoint_path, "no case arm of stages exec'ing mailpipe-$command")
for s in sorted(entry_stages):
    if f"mailpipe-{s}" not in image_bins:
        problem(entrypoint_path, f"command {s} runs mailpipe-{s}, which the image does not have")
for b in re.findall(r"exec (/usr/local/bin/[a-z-]+)\b", entrypoint):
    if os.path.basename(b) not in image_bins:
        problem(entrypoint_path, f"execs {b}, which the image does not have")
stage_binaries = {b for b in image_bins if b != "mailpipe"}
for b in sorted(stage_binaries):
    if b.removeprefix("mailpipe-") not in entry_stages:
        problem(entrypoint_path, f"has no command for {b}")
entry_commands = entry_stages | {"mailpipe", "probe", "help"}
# Every stage listens on all interfaces in the image.
for s in STAGES:
    listen = image_env.get(f"MAILPIPE_TELEMETRY__METRICS_LISTEN__{s.upper()}", "")
    if not listen.startswith("0.0.0.0:"):
        problem("Dockerfile ENV", f"{s} does not serve its metrics and health on 0.0.0.0 ({listen or 'unset'})")
stage_port = {s: int(image_env.get(f"MAILPIPE_TELEMETRY__METRICS_LISTEN__{s.upper()}", "0:0").rsplit(":", 1)[1]) for s in STAGES}
stage_port["receiver"] = int(image_env.get("MAILPIPE_RECEIVER__LISTEN", "0:0").rsplit(":", 1)[1])
stage_port["console"] = int(image_env.get("MAILPIPE_CONSOLE__LISTEN", "0:0").rsplit(":", 1)[1])
ok(f"image: {len(image_bins)} binaries = the workspace's [[bin]]s; entrypoint commands {', '.join(sorted(entry_stages))} name them; final stage USER {users[-1] if users else '?'}")


def command_ok(where, args):
    """args run through the entrypoint: a stage, `mailpipe ...`, probe, or a CLI subcommand."""
    if not args:
        problem(where, "no command: the image's default is `help`")
        return None
    if args[0] in entry_stages:
        return args[0]
    if args[0] in entry_commands:
        return args[0]
    problem(where, f"command {args[0]!r} is not one of the entrypoint's ({', '.join(sorted(entry_commands))})")
    return None


# ---------------------------------------------------------------- 2. compose
project = json.load(open(f"{work}/compose.json"))
published = {}
mailpipe_services = 0
for name, svc in sorted(project.get("services", {}).items()):
    where = f"compose.yaml: services.{name}"
    env = svc.get("environment") or {}
    check_env(where, env)
    for port in svc.get("ports") or []:
        key = (port.get("host_ip", ""), port.get("published"), port.get("protocol", "tcp"))
        if key in published:
            problem(where, f"publishes {key} like {published[key]}")
        published[key] = name
    if not str(svc.get("image", "")).startswith("${MAILPIPE_IMAGE") and "mailpipe" not in str(svc.get("image", "")):
        continue
    mailpipe_services += 1
    entry_override = svc.get("entrypoint") or []
    args = (entry_override[1:] if entry_override else []) + (svc.get("command") or [])
    stage = command_ok(where, args)
    test = (svc.get("healthcheck") or {}).get("test") or []
    if stage in stage_port and test:
        if "probe" not in test or str(stage_port[stage]) not in test:
            problem(where, f"health check {test} does not probe port {stage_port[stage]}")
    if stage in EXACTLY_ONCE and not env.get("MAILPIPE_KAFKA__INSTANCE_ID"):
        problem(where, "an exactly-once stage without a fixed MAILPIPE_KAFKA__INSTANCE_ID")
    if stage and "MAILPIPE_CONFIG" in env and not svc.get("secrets"):
        problem(where, "MAILPIPE_CONFIG set but no secret mounted")
for s in STAGES + ["receiver", "console"]:
    if s not in project.get("services", {}):
        problem("compose.yaml", f"no service {s}")
ok(f"compose: {mailpipe_services} services run the mailpipe image with entrypoint commands; health checks on each stage's port; {len(published)} published ports, distinct")


# ---------------------------------------------------------------- 3. Kubernetes
def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


rendered = load_all(f"{work}/rendered.yaml") if os.path.getsize(f"{work}/rendered.yaml") else []
if not rendered:
    kustomization = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
    for res in kustomization["resources"]:
        rendered += load_all(f"deploy/k8s/{res}")
listed = set(yaml.safe_load(open("deploy/k8s/kustomization.yaml"))["resources"])
for path in sorted(glob.glob("deploy/k8s/*.yaml")):
    base = os.path.basename(path)
    if base not in listed and base not in ("kustomization.yaml", "secret.example.yaml"):
        problem(path, "not listed in kustomization.yaml")
examples = load_all("deploy/k8s/secret.example.yaml")

# The KEDA CRD schemas (openAPIV3Schema per served version), made strict: an object whose
# properties are listed accepts no others (as kubeconform's -strict does).
def strict(schema):
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema = dict(schema, additionalProperties=False)
        return {k: strict(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


crd_schemas = {}
for path in glob.glob(f"{keda_crds}/*.yaml"):
    crd = yaml.safe_load(open(path))
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        schema = strict(version["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"type": "object"}
        crd_schemas[(f"{group}/{version['name']}", kind)] = schema
if ("keda.sh/v1alpha1", "ScaledObject") not in crd_schemas:
    problem(keda_crds, "no ScaledObject CRD found")

counts = {}
for doc in rendered + examples:
    kind, api = doc.get("kind"), doc.get("apiVersion")
    where = f"{kind}/{doc.get('metadata', {}).get('name')}"
    counts[kind] = counts.get(kind, 0) + 1
    if (api, kind) in crd_schemas:
        try:
            jsonschema.Draft7Validator(crd_schemas[(api, kind)]).validate(doc)
        except jsonschema.ValidationError as e:
            problem(where, f"against the KEDA CRD: {e.message} at {'/'.join(map(str, e.absolute_path))}")
        continue
    for version in k8s_versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problem(where, f"Kubernetes {version}: {e.message} at {'/'.join(map(str, e.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            problem(where, f"Kubernetes {version} has no schema for {api} {kind}")
ok(f"schemas: {len(rendered) + len(examples)} objects valid (strict) for Kubernetes {' and '.join(k8s_versions)} "
   f"and KEDA {os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(keda_crds))))}: "
   + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))

by_kind = {}
for doc in rendered:
    by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
configmaps = by_kind.get("ConfigMap", {})
env_cm = configmaps.get("mailpipe-env", {}).get("data", {})
check_env("ConfigMap mailpipe-env", env_cm)
for name, cm in configmaps.items():
    for key, value in (cm.get("data") or {}).items():
        if re.search(r"PASSWORD|SECRET|TOKEN", key, re.I) or re.search(r"^\s*secrets\s*=|\[sources\.|whsec_", str(value), re.M):
            problem(f"ConfigMap/{name}", f"{key} looks like a secret: secrets go in the Secret mailpipe-secrets")

workloads = {**by_kind.get("Deployment", {}), **by_kind.get("StatefulSet", {})}
seen_stages = set()
for name, w in sorted(workloads.items()):
    where = f"{w['kind']}/{name}"
    spec = w["spec"]["template"]["spec"]
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        problem(where, "pod not runAsNonRoot")
    for c in spec["containers"]:
        stage = command_ok(f"{where} container {c['name']}", c.get("args") or c.get("command"))
        seen_stages.add(stage)
        env = {e["name"]: e for e in c.get("env", [])}
        check_env(where, env)
        for e in env.values():
            if "value" in e and re.search(r"PASSWORD|SECRET", e["name"]):
                problem(where, f"{e['name']} given as a plain value: use a secretKeyRef")
        res = c.get("resources", {})
        if not res.get("requests", {}).get("memory") or not res.get("requests", {}).get("cpu") or not res.get("limits", {}).get("memory"):
            problem(where, "resources: requests (cpu, memory) and a memory limit wanted")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            p = c.get(probe)
            if not p or "httpGet" not in p:
                problem(where, f"no HTTP {probe}")
                continue
            port = p["httpGet"]["port"]
            number = ports.get(port, port)
            want = "/healthz" if probe == "livenessProbe" else "/readyz"
            if p["httpGet"]["path"] != want:
                problem(where, f"{probe} asks {p['httpGet']['path']}, not {want}")
            if stage in stage_port and number != stage_port[stage]:
                problem(where, f"{probe} on port {number}, the stage serves on {stage_port[stage]}")
        if stage in EXACTLY_ONCE:
            ref = env.get("MAILPIPE_KAFKA__INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if w["kind"] != "StatefulSet" or ref != "metadata.name":
                problem(where, "an exactly-once stage: a StatefulSet with MAILPIPE_KAFKA__INSTANCE_ID from metadata.name (stable per replica)")
        mounted_secret = any(v.get("secret") for v in spec.get("volumes", []))
        if "MAILPIPE_CONFIG" in env and not mounted_secret:
            problem(where, "MAILPIPE_CONFIG set but no Secret volume mounted")
        if stage in ("verify", "receiver", "deliver") and "MAILPIPE_CONFIG" not in env:
            problem(where, "needs the sources/delivery file (MAILPIPE_CONFIG from the Secret)")
        for v in spec.get("volumes", []):
            if v.get("configMap") and v["configMap"]["name"] == "mailpipe-secrets":
                problem(where, "the secrets must come from a Secret")
for s in STAGES + ["receiver", "console"]:
    if s not in seen_stages:
        problem("deploy/k8s", f"no workload runs {s}")

pdb_targets = set()
for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
    sel = pdb["spec"]["selector"]["matchLabels"]
    hits = [w for w in workloads.values() if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
    if not hits:
        problem(f"PodDisruptionBudget/{name}", f"selects no workload ({sel})")
    pdb_targets.update(h["metadata"]["name"] for h in hits)
for name in workloads:
    if name not in pdb_targets:
        problem(name, "no PodDisruptionBudget")

scaled = set()
for name, so in by_kind.get("ScaledObject", {}).items():
    where = f"ScaledObject/{name}"
    target = so["spec"]["scaleTargetRef"]
    w = workloads.get(target["name"])
    if not w or w["kind"] != target.get("kind", "Deployment"):
        problem(where, f"scaleTargetRef {target} names no workload of that kind")
        continue
    stage = w["spec"]["template"]["spec"]["containers"][0]["args"][0]
    scaled.add(stage)
    prefix = env_cm.get("MAILPIPE_KAFKA__TOPIC_PREFIX", "")
    kafka = [t for t in so["spec"]["triggers"] if t["type"] == "kafka"]
    if len(kafka) != 1:
        problem(where, "one kafka trigger wanted")
        continue
    meta = kafka[0]["metadata"]
    if meta.get("consumerGroup") != f"{prefix}mailpipe-{stage}":
        problem(where, f"consumerGroup {meta.get('consumerGroup')}, the stage's group is {prefix}mailpipe-{stage}")
    main_topic = topic_names.get(stage_inputs.get(stage, ["?"])[0])
    if meta.get("topic") != f"{prefix}{main_topic}":
        problem(where, f"topic {meta.get('topic')}, the stage's (first) input is {prefix}{main_topic}")
    key = partition_key(main_topic or "")
    parts = int(env_cm.get(f"MAILPIPE_KAFKA__PARTITIONS__{key.upper()}", partitions.get(key, 0)))
    if so["spec"].get("maxReplicaCount") != parts:
        problem(where, f"maxReplicaCount {so['spec'].get('maxReplicaCount')}, {main_topic} has {parts} partitions")
    if meta.get("allowIdleConsumers", "false") != "false":
        problem(where, "allowIdleConsumers must be false (no replica beyond the partitions)")
    if meta.get("bootstrapServers") != env_cm.get("MAILPIPE_KAFKA__BROKERS"):
        problem(where, f"bootstrapServers {meta.get('bootstrapServers')} differ from MAILPIPE_KAFKA__BROKERS")
for s in STAGES:
    if s not in scaled:
        problem("deploy/k8s", f"no ScaledObject for {s}")
# An autoscaled workload must not set spec.replicas: every apply would reset the count.
autoscaled = {so["spec"]["scaleTargetRef"]["name"] for so in by_kind.get("ScaledObject", {}).values()}
autoscaled |= {h["spec"]["scaleTargetRef"]["name"] for h in by_kind.get("HorizontalPodAutoscaler", {}).values()}
for name in sorted(autoscaled & set(workloads)):
    if "replicas" in workloads[name]["spec"]:
        problem(name, "sets spec.replicas although an autoscaler owns it (each apply would reset the count)")

ingresses = by_kind.get("Ingress", {})
for name, ing in ingresses.items():
    limit = ing["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/proxy-body-size", "")
    m = re.fullmatch(r"(\d+)([kmg]?)", limit.lower())
    size = int(m.group(1)) * {"": 1, "k": 1024, "m": 1 << 20, "g": 1 << 30}[m.group(2)] if m else None
    if size != max_body:
        problem(f"Ingress/{name}", f"body limit {limit!r} is not [receiver] max_body_bytes ({max_body})")
if not ingresses:
    problem("deploy/k8s", "no Ingress for the receiver")
ok(f"cross-checks: {len(workloads)} workloads (probes on /healthz and /readyz at each stage's port, requests and limits, non-root), "
   f"{len(by_kind.get('PodDisruptionBudget', {}))} PDBs, {len(scaled)} ScaledObjects (group, input topic, max = partitions; no fixed replicas), "
   f"Ingress body limit = {max_body} bytes, no secret in a ConfigMap")

# ---------------------------------------------------------------- settings, as loaded
# Each container's and compose service's environment (image ENV, then the ConfigMap or
# compose environment, then its own variables; secrets as placeholders, MAILPIPE_CONFIG
# as the example Secret's file or the compose secret's file) goes through the real
# settings loader: `mailpipe check-config` of the build `make test` made.
mailpipe_bin = os.environ.get("MAILPIPE_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/mailpipe/target")), "debug", "mailpipe")
secret_example = next((d for d in examples if d.get("kind") == "Secret"), {})
example_file = f"{work}/secret-mailpipe.toml"
with open(example_file, "w") as f:
    f.write(secret_example.get("stringData", {}).get("mailpipe.toml", ""))


def check_config(where, env):
    empty = f"{work}/cwd"
    os.makedirs(empty, exist_ok=True)
    run = subprocess.run([mailpipe_bin, "check-config"], cwd=empty, capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", ""), **env})
    if run.returncode != 0:
        problem(where, "mailpipe check-config refuses its environment: " + (run.stderr or run.stdout).strip().replace("\n", " | ")[:600])


if os.access(mailpipe_bin, os.X_OK):
    loaded = 0
    for name, w in sorted(workloads.items()):
        for c in w["spec"]["template"]["spec"]["containers"]:
            env = {k: v for k, v in image_env.items()}
            for source in c.get("envFrom", []):
                env.update((configmaps.get(source.get("configMapRef", {}).get("name"), {}).get("data") or {}))
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                elif "secretKeyRef" in e.get("valueFrom", {}):
                    env[e["name"]] = "placeholder"
                elif "fieldRef" in e.get("valueFrom", {}):
                    env[e["name"]] = f"{name}-0"
            if "MAILPIPE_CONFIG" in env:
                env["MAILPIPE_CONFIG"] = example_file
            check_config(f"{w['kind']}/{name}", env)
            loaded += 1
    compose_secrets = {n: s.get("file") for n, s in (project.get("secrets") or {}).items()}
    for name, svc in sorted(project.get("services", {}).items()):
        if "mailpipe" not in str(svc.get("image", "")):
            continue
        env = {**image_env, **{k: str(v) for k, v in (svc.get("environment") or {}).items() if v is not None}}
        if "MAILPIPE_CONFIG" in env:
            mounted = {f"/run/secrets/{s.get('target') or s['source']}": compose_secrets.get(s["source"]) for s in svc.get("secrets") or []}
            env["MAILPIPE_CONFIG"] = mounted.get(env["MAILPIPE_CONFIG"]) or "/nonexistent"
        check_config(f"compose.yaml: services.{name}", env)
        loaded += 1
    ok(f"settings: {loaded} environments (every Kubernetes container, every compose mailpipe service) pass `mailpipe check-config` ({mailpipe_bin})")
else:
    print(f"    note: {mailpipe_bin} not built: settings not loaded (`make build` first; `make test` does)")

# ---------------------------------------------------------------- 6. Kafka ACLs
acls = open(f"{work}/acls.txt").read()
if "kafka-acls.sh" not in acls:
    problem("deploy/kafka-acls/acls.sh", f"dry run printed no command: {acls[:300]}")
for s in STAGES:
    principal = f"User:mailpipe-{s}"
    if not re.search(rf"--group mailpipe-{s}\b", acls):
        problem("acls.sh", f"no ACL for the group mailpipe-{s}")
    for variant in stage_inputs.get(s, []):
        topic = topic_names.get(variant)
        if not re.search(rf"{re.escape(principal)} --operation Read --operation Describe --topic {re.escape(topic)}\s*$", acls, re.M):
            problem("acls.sh", f"{principal} may not read its input {topic}")
    if s in EXACTLY_ONCE and not re.search(rf"{re.escape(principal)} .*--transactional-id mailpipe-{s}\.", acls):
        problem("acls.sh", f"{principal} has no transactional-id ACL (exactly once)")
# mail.raw holds credentials: read by verify and operators only, written by the receiver.
for line in acls.splitlines():
    if not re.search(r"--topic mail\.raw\s*$", line):
        continue
    principal = re.search(r"--allow-principal (\S+)", line).group(1)
    if "--operation Read" in line and principal not in ("User:mailpipe-verify", "User:mailpipe-operator"):
        problem("acls.sh", f"{principal} may read mail.raw: {line}")
    if "--operation Write" in line and principal != "User:mailpipe-receiver":
        problem("acls.sh", f"{principal} may write mail.raw: {line}")
ok(f"Kafka ACLs: {acls.count(chr(10))} commands; every stage's group, inputs and transactional ids; mail.raw read by verify and operators only, written by the receiver only")

for p in problems:
    print(f"    FAIL {p}")
sys.exit(1 if problems else 0)
PY

# --- 5. Prometheus scrape config ------------------------------------------------------
step "promtool check config deploy/k8s/prometheus-scrape.yml (promtool of github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION)"
"$PROMTOOL" check config deploy/k8s/prometheus-scrape.yml || failed+=("prometheus-scrape.yml")

if ((${#failed[@]})); then
    err "FAILED: ${failed[*]}"
    exit 1
fi
step "deployment checks passed"
