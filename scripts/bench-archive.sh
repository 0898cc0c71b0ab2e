#!/usr/bin/env bash
# `make bench-archive` (bench/src/bin/bench_archive.rs): session archiving by a running sidecar
# into the dev stack's Garage, against a plain PUT peer. Uses a database of its own on the dev
# cluster (ibex_bench_archive, migrated here) and a bucket of its own (ibex-bench-archive), so a
# dev sidecar (`make run`) neither takes the benchmark's sessions nor mixes with its objects.
# Starts `ibex serve` on IBEX_BENCH_HTTP_PORT / IBEX_BENCH_GRPC_PORT (8790 / 8791), stops it after.
source "$(dirname "$0")/env.sh"
IBEX_BIN=$CARGO_TARGET_DIR/release/ibex
HTTP_ADDR=127.0.0.1:${IBEX_BENCH_HTTP_PORT:-8790}
GRPC_ADDR=127.0.0.1:${IBEX_BENCH_GRPC_PORT:-8791}
DB=ibex_bench_archive
BUCKET=ibex-bench-archive
LOG=$IBEX_STATE/bench-archive.log

"$IBEX_ROOT/scripts/stack.sh" up dev
cargo build --release -p ibex_sidecar --bin ibex -p ibex_bench --bin bench_archive
source "$IBEX_ROOT/scripts/bench-db.sh"
bench_db_current "$DB"
"$IBEX_ROOT/scripts/stack.sh" set-sidecar-password dev
eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev)"
# shellcheck disable=SC1090
source "$IBEX_DATA/dev/secrets.env"
APP_URL="postgres://ibex_sidecar:$IBEX_SIDECAR_PASSWORD@127.0.0.1:$IBEX_PG_PORT/$DB"

: >"$LOG"
IBEX_DATABASE_URL=$APP_URL IBEX_HTTP_ADDR=$HTTP_ADDR IBEX_GRPC_ADDR=$GRPC_ADDR \
IBEX_S3_ENDPOINT=$IBEX_S3_ENDPOINT IBEX_S3_REGION=$IBEX_S3_REGION IBEX_S3_BUCKET=$BUCKET \
IBEX_S3_ACCESS_KEY_ID=$IBEX_S3_ACCESS_KEY_ID IBEX_S3_SECRET_ACCESS_KEY=$IBEX_S3_SECRET_ACCESS_KEY \
IBEX_HOT_CACHE_CONSUMER=false IBEX_MODEL_DIR=$IBEX_MODEL_DIR IBEX_ORT_LIBRARY=$IBEX_ORT_LIB IBEX_LOG=warn \
  "$IBEX_BIN" serve >>"$LOG" 2>&1 </dev/null &
SIDECAR_PID=$!
stop_sidecar() { kill -TERM "$SIDECAR_PID" 2>/dev/null || true; wait "$SIDECAR_PID" 2>/dev/null || true; }
trap stop_sidecar EXIT
for _ in $(seq 600); do
  curl -fsS "http://$HTTP_ADDR/readyz" 2>/dev/null | grep -q '"status":"up"' && break
  kill -0 "$SIDECAR_PID" 2>/dev/null || { tail -20 "$LOG" >&2; die "the sidecar exited (log: $LOG)"; }
  sleep 0.1
done
curl -fsS "http://$HTTP_ADDR/readyz" | grep -q '"status":"up"' ||
  die "the sidecar or its archive store was not ready within 60 s (log: $LOG)"

IBEX_BENCH_URL=$(bench_db_url "$DB") IBEX_S3_BUCKET=$BUCKET \
IBEX_S3_ENDPOINT=$IBEX_S3_ENDPOINT IBEX_S3_REGION=$IBEX_S3_REGION \
IBEX_S3_ACCESS_KEY_ID=$IBEX_S3_ACCESS_KEY_ID IBEX_S3_SECRET_ACCESS_KEY=$IBEX_S3_SECRET_ACCESS_KEY \
  "$CARGO_TARGET_DIR/release/bench_archive"
# The org's archive deletion is carried out by the sidecar: give it a moment before stopping it.
sleep 3
