#!/usr/bin/env bash
# `make bench-archive` (bench/src/bin/bench_archive.rs): session archiving by a running sidecar
# into the dev stack's Garage, against a plain PUT peer. Uses a database of its own on the dev
# cluster (ibex_bench_archive, migrated here) and a bucket of its own (ibex-bench-archive), so a
# dev sidecar (`make run`) neither takes the benchmark's sessions nor mixes with its objects.
# Starts `ibex serve` on IBEX_BENCH_HTTP_PORT / IBEX_BENCH_GRPC_PORT (8790 / 8791), stops it after.
source "$(dirname "$0")/env.sh"
DB=ibex_bench_archive
BUCKET=ibex-bench-archive
LOG=$IBEX_STATE/bench-archive.log

"$IBEX_ROOT/scripts/stack.sh" up dev
cargo build --release -p ibex_sidecar --bin ibex -p ibex_bench --bin bench_archive
source "$IBEX_ROOT/scripts/bench-db.sh"
bench_db_current "$DB"
bench_sidecar_start "$DB" "$LOG" IBEX_S3_BUCKET="$BUCKET"
eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev)"

IBEX_BENCH_URL=$(bench_db_url "$DB") IBEX_S3_BUCKET=$BUCKET \
IBEX_S3_ENDPOINT=$IBEX_S3_ENDPOINT IBEX_S3_REGION=$IBEX_S3_REGION \
IBEX_S3_ACCESS_KEY_ID=$IBEX_S3_ACCESS_KEY_ID IBEX_S3_SECRET_ACCESS_KEY=$IBEX_S3_SECRET_ACCESS_KEY \
  "$CARGO_TARGET_DIR/release/bench_archive"
# The org's archive deletion is carried out by the sidecar: give it a moment before stopping it.
sleep 3
