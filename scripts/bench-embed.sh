#!/usr/bin/env bash
# `make bench-embed`: see bench/src/bin/bench_embed.rs. Runs against the dev stack.
source "$(dirname "$0")/env.sh"
PY=$("$IBEX_ROOT/scripts/bench/venv.sh")
"$IBEX_ROOT/scripts/run.sh" >/dev/null
cargo build --release -p ibex_bench --bin bench_embed
eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev)"
IBEX_DATABASE_URL=$IBEX_DATABASE_URL IBEX_MODEL_DIR=$IBEX_MODEL_DIR IBEX_ORT_LIB=$IBEX_ORT_LIB \
IBEX_PEER_PYTHON=$PY IBEX_PEER_SCRIPT=$IBEX_ROOT/scripts/bench/peer_embed.py \
  "$CARGO_TARGET_DIR/release/bench_embed"
