# IBEX: `make run` brings the stack up, `make test` runs every test tier. Both install what they
# need first (scripts/setup.sh, idempotent). See README.md and CONTRIBUTING.md.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ibex/target
IBEX := $(CARGO_TARGET_DIR)/release/ibex

.PHONY: help setup build build-sidecar extension run stop status db-migrate psql test test-unit bench-memory \
        test-pg test-regress test-sidecar test-api-fuzz test-browser test-e2e test-security test-faults test-image lint fmt bench bench-embed bench-extraction bench-sidecar bench-context-load bench-context bench-api bench-archive bench-dashboard clean-data fuzz bench-load soak

help:
	@echo "make run        bring up Postgres+ibex_pg and Redis (dev stack), apply migrations"
	@echo "make test       install what is missing, build, run all test tiers"
	@echo "make stop       stop the dev stack"
	@echo "make db-migrate apply sql/migrations and sql/api to the dev database"
	@echo "make bench      all benchmarks (bench-embed, ...)"
	@echo "make lint       cargo fmt --check and clippy"
	@echo "make test-faults kill -9 of each component under load; every acknowledged write checked"
	@echo "make fuzz       libFuzzer on every fuzz target, FUZZ_SECONDS each (default 60)"
	@echo "make test-image the PostgreSQL image's install (Dockerfile.postgres) in a debootstrap root, then pg_regress"

setup:
	@scripts/setup.sh

build-sidecar: setup
	@cargo build --release -p ibex_sidecar --bin ibex

extension: setup
	@scripts/extension.sh install

build: build-sidecar extension

run: build
	@scripts/run.sh

stop:
	@scripts/run.sh stop-sidecar
	@scripts/stack.sh down dev

status:
	@scripts/stack.sh status dev

db-migrate: build
	@scripts/stack.sh up dev
	@eval "$$(scripts/stack.sh urls dev)" && $(IBEX) migrate --database-url "$$IBEX_MIGRATE_DATABASE_URL"
	@scripts/stack.sh set-sidecar-password dev

psql:
	@scripts/stack.sh psql dev

test: setup
	@scripts/test.sh all

test-unit: setup
	@scripts/test.sh unit

test-pg: setup
	@scripts/test.sh pg

test-regress: setup
	@scripts/test.sh regress

test-e2e: setup
	@scripts/test.sh e2e

test-api-fuzz: setup
	@scripts/test.sh api-fuzz

test-sidecar: setup
	@scripts/test.sh sidecar

test-browser: setup
	@scripts/test.sh browser

test-security: setup
	@scripts/test.sh security

# kill -9 of each component under load; nothing acknowledged may be lost (tests/tests/faults.rs).
test-faults: setup
	@scripts/test.sh faults

# Dockerfile.postgres's install script in a clean debootstrap root (cached), then the regress
# suite against the server it installed (scripts/test-image.sh).
test-image: build
	@scripts/test-image.sh

# Bounded: FUZZ_SECONDS per target (default 60); finds are merged into fuzz/corpus/.
fuzz: setup
	@scripts/fuzz.sh

lint:
	@cargo fmt --all -- --check
	@cargo clippy --workspace --release --all-targets -- -D warnings

fmt:
	@cargo fmt --all

bench: bench-embed bench-memory bench-sidecar bench-context bench-extraction bench-api bench-archive bench-dashboard bench-load

bench-embed: build
	@scripts/bench-embed.sh

clean-data:
	@scripts/stack.sh down dev || true
	@scripts/stack.sh down test || true
	rm -rf .ibex/data

bench-memory: build
	@scripts/bench-memory.sh

bench-sidecar: build
	@scripts/bench-sidecar.sh

bench-context-load: build
	@scripts/bench-sidecar.sh bench_context_load

# Mixed workload at 1, 8, 32 and 128 clients, 60 s each (IBEX_BENCH_LOAD_SECONDS).
bench-load: build
	@scripts/bench-sidecar.sh bench_load

# 10 minutes at 32 clients: memory, open files and connections must not grow.
soak: build
	@IBEX_BENCH_SOAK_SECONDS=$${IBEX_BENCH_SOAK_SECONDS:-600} scripts/bench-sidecar.sh bench_load

bench-context: build
	@scripts/bench-context.sh

bench-api: build
	@scripts/bench-sidecar.sh bench_api

bench-archive: build
	@scripts/bench-archive.sh

bench-dashboard: build
	@scripts/bench-dashboard.sh

bench-extraction: build
	@scripts/bench-extraction.sh
