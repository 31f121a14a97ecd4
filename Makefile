# mailpipe — developer commands. `make` (or `make help`) lists them.
#
# The local stack (Apache Kafka, ClickHouse, Redis, schema registry) is managed by scripts/stack.sh;
# its run directory (data, logs, pids) is .run/ (MAILPIPE_RUN_DIR). Ports and other knobs:
# see the header of scripts/stack.sh.

SHELL := /bin/bash
.DEFAULT_GOAL := help
# Targets depend on each other in order (install before build before up): never in parallel.
.NOTPARALLEL:

# Build outputs outside the clone, shared by every checkout (and by fresh CI clones).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/mailpipe/target
# cargo lives in ~/.cargo/bin, which a fresh shell may not have on PATH yet.
export PATH := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin:$(PATH)

CARGO ?= cargo

.PHONY: help install build up down status run test chaos bench fuzz fmt lint

help: ## list the targets
	@printf 'mailpipe — make targets:\n\n'
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## / { printf "  make %-8s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@printf '\nBuild outputs: %s\n' "$(CARGO_TARGET_DIR)"

install: ## install what is missing: Debian packages (ClickHouse, Redis, Java, Maven), Apache Kafka
	@scripts/stack.sh install

build: ## build every binary of the workspace (debug)
	$(CARGO) build --workspace --bins

up: install build ## start the local stack and all built stages in the background
	@scripts/stack.sh up

down: ## stop everything `make up` / `make run` started
	@scripts/stack.sh down

status: ## show the stack's services and stages, their pids, ports and health
	@scripts/stack.sh status

run: install build ## start everything, print where to look, follow the logs; Ctrl-C stops it all
	@scripts/run.sh

test: install build ## fmt check, clippy, then the whole test suite against its own stack
	@scripts/test.sh

chaos: install build ## kill tests and the whole-pipeline chaos run: SIGKILLed processes lose nothing (slow, own stack)
	@scripts/chaos.sh

bench: install build ## benchmarks (release builds); they print figures, they assert nothing
	@scripts/bench.sh

fuzz: ## run every cargo-fuzz target FUZZ_SECONDS (default 30) each; installs nightly + cargo-fuzz if missing
	@scripts/fuzz.sh

fmt: ## format the code (provider modules by name: cargo fmt does not follow macro-declared modules)
	$(CARGO) fmt --all
	rustfmt --edition 2021 crates/*/src/providers/*.rs

lint: ## check formatting and run clippy (warnings are errors)
	$(CARGO) fmt --all --check
	rustfmt --edition 2021 --check crates/*/src/providers/*.rs
	$(CARGO) clippy --workspace --all-targets -- -D warnings
