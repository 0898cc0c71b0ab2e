#!/usr/bin/env bash
# `make bench-extraction`: see bench/src/bin/bench_extraction.rs. Uses the dev stack's database
# (the one its extraction workers serve), in an org of its own; restores the LLM settings after.
source "$(dirname "$0")/env.sh"
# The dev stack and its migrations, not the sidecar (which would only add noise here).
"$IBEX_ROOT/scripts/stack.sh" up dev
eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev)"
"$CARGO_TARGET_DIR/release/ibex" migrate --database-url "$IBEX_MIGRATE_DATABASE_URL" >/dev/null
cargo build --release -p ibex_bench --bin bench_extraction
IBEX_BENCH_URL="postgres://postgres@localhost/ibex?host=$IBEX_DATA/dev/run&port=$IBEX_PG_PORT" \
  "$CARGO_TARGET_DIR/release/bench_extraction"
