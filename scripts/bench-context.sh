#!/usr/bin/env bash
# `make bench-context` (bench/src/bin/bench_context.rs): what AssembleContext packs for a
# question, the old packing against the new one, on the conversational set learned in the dev
# database (org bench-conversations; learned by the dev cluster's extraction workers the first
# time, reused after). Starts two `ibex serve` of its own against the dev database and the dev
# Redis (logical database 3, flushed, shared by both): `new` with the default settings on
# IBEX_BENCH_HTTP_PORT / IBEX_BENCH_GRPC_PORT (8790 / 8791), `old` with the selection off and a
# fixed cold pool on the next two ports; stops both at the end.
source "$(dirname "$0")/env.sh"
IBEX_BIN=$CARGO_TARGET_DIR/release/ibex
HTTP_PORT=${IBEX_BENCH_HTTP_PORT:-8790}
GRPC_PORT=${IBEX_BENCH_GRPC_PORT:-8791}
LOG=$IBEX_STATE/bench-context.log

"$IBEX_ROOT/scripts/stack.sh" up dev
cargo build --release -p ibex_sidecar --bin ibex -p ibex_bench --bin bench_context
eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev)"
"$IBEX_BIN" migrate --database-url "$IBEX_MIGRATE_DATABASE_URL" >/dev/null
SUPER_URL="postgres://postgres@localhost/ibex?host=$IBEX_DATA/dev/run&port=$IBEX_PG_PORT"
# Learned before the sidecars start, so their hot caches are built from the whole set.
IBEX_BENCH_URL_LEARNING=$SUPER_URL "$CARGO_TARGET_DIR/release/bench_context" prepare

"$IBEX_ROOT/scripts/stack.sh" set-sidecar-password dev
# shellcheck disable=SC1090
source "$IBEX_DATA/dev/secrets.env"
APP_URL="postgres://ibex_sidecar:$IBEX_SIDECAR_PASSWORD@127.0.0.1:$IBEX_PG_PORT/ibex"
REDIS_URL="redis://127.0.0.1:$IBEX_REDIS_PORT/3"
redis-cli -p "$IBEX_REDIS_PORT" -n 3 FLUSHDB >/dev/null

PIDS=()
stop_sidecars() { for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap stop_sidecars EXIT
# serve HTTP_PORT GRPC_PORT [SETTING=VALUE...]: one sidecar with the given extra settings.
serve() {
  local http=127.0.0.1:$1 grpc=127.0.0.1:$2
  shift 2
  env IBEX_DATABASE_URL="$APP_URL" IBEX_REDIS_URL="$REDIS_URL" IBEX_HTTP_ADDR="$http" IBEX_GRPC_ADDR="$grpc" \
    IBEX_S3_ENDPOINT="$IBEX_S3_ENDPOINT" IBEX_S3_REGION="$IBEX_S3_REGION" \
    IBEX_S3_ACCESS_KEY_ID="$IBEX_S3_ACCESS_KEY_ID" IBEX_S3_SECRET_ACCESS_KEY="$IBEX_S3_SECRET_ACCESS_KEY" \
    IBEX_MODEL_DIR="$IBEX_MODEL_DIR" IBEX_ORT_LIBRARY="$IBEX_ORT_LIB" IBEX_LOG=warn "$@" \
    "$IBEX_BIN" serve >>"$LOG" 2>&1 </dev/null &
  PIDS+=($!)
  for _ in $(seq 600); do
    curl -fsS "http://$http/readyz" >/dev/null 2>&1 && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -20 "$LOG" >&2; die "a sidecar exited (log: $LOG)"; }
    sleep 0.1
  done
  die "the sidecar on $http was not ready within 60 s (log: $LOG)"
}
# IBEX_BENCH_CONTEXT_SETTINGS: extra settings for `new` (SETTING=VALUE ...), for tuning.
# shellcheck disable=SC2086
serve "$HTTP_PORT" "$GRPC_PORT" ${IBEX_BENCH_CONTEXT_SETTINGS:-}
serve $((HTTP_PORT + 2)) $((GRPC_PORT + 2)) \
  IBEX_SMALL_TALK_RELEVANCE=0 IBEX_MIN_RELEVANCE=0 IBEX_RELATIVE_RELEVANCE=0 IBEX_NEAR_COPY_SIMILARITY=1 IBEX_COLD_K=20 IBEX_COLD_K_MAX=20
for _ in $(seq 1200); do
  [ -n "$(redis-cli -p "$IBEX_REDIS_PORT" -n 3 GET ibex:hot:v1:ready)" ] && break
  sleep 0.1
done
[ -n "$(redis-cli -p "$IBEX_REDIS_PORT" -n 3 GET ibex:hot:v1:ready)" ] || die "the hot cache was not built within 120 s"

IBEX_BENCH_URL_LEARNING=$SUPER_URL IBEX_BENCH_GRPC_NEW=127.0.0.1:$GRPC_PORT \
IBEX_BENCH_GRPC_OLD=127.0.0.1:$((GRPC_PORT + 2)) "$CARGO_TARGET_DIR/release/bench_context"
