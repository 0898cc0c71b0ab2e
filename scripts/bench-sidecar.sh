#!/usr/bin/env bash
# `make bench-sidecar` (bench/src/bin/bench_sidecar.rs); with the argument bench_context_load,
# `make bench-context-load` (bench/src/bin/bench_context_load.rs); with bench_api, `make bench-api`
# (bench/src/bin/bench_api.rs); with bench_load, `make bench-load` and `make soak`
# (bench/src/bin/bench_load.rs). Runs against the dev cluster's
# ibex_bench_100k database (100k memories, seeded by `make bench-memory`; seeded here through it
# when missing) and the dev Redis (logical database 2, so the dev sidecar's hot cache is not
# mixed with the benchmark's) and the dev Garage (S3; the same bucket as the dev sidecar, under
# the benchmark database's own org ids). Starts its own `ibex serve` on IBEX_BENCH_HTTP_PORT /
# IBEX_BENCH_GRPC_PORT (8790 / 8791) and stops it at the end.
source "$(dirname "$0")/env.sh"
BENCH=${1:-bench_sidecar}
IBEX_BIN=$CARGO_TARGET_DIR/release/ibex
HTTP_ADDR=127.0.0.1:${IBEX_BENCH_HTTP_PORT:-8790}
GRPC_ADDR=127.0.0.1:${IBEX_BENCH_GRPC_PORT:-8791}
# The proxy's upstream: bench_load serves the OpenAI protocol here (bench/src/fake_llm.rs).
LLM_ADDR=127.0.0.1:${IBEX_BENCH_LLM_PORT:-8792}
DB=ibex_bench_100k
LOG=$IBEX_STATE/bench-sidecar.log

"$IBEX_ROOT/scripts/stack.sh" up dev
cargo build --release -p ibex_sidecar --bin ibex -p ibex_bench --bin "$BENCH"
source "$IBEX_ROOT/scripts/bench-db.sh"
SUPER_URL=$(bench_db_url "$DB")

seeded() {
  [ "$(psql_admin -d "$DB" -c "SELECT rows FROM public.ibex_bench_seed WHERE version = 1" 2>/dev/null)" = 100000 ]
}

bench_db_current "$DB"
if ! seeded; then
  log "bench-sidecar: seeding $DB through bench-memory (100k memories; a few minutes, once; log: $LOG)"
  IBEX_BENCH_SIZES=100000 IBEX_BENCH_ROUNDS=1 "$IBEX_ROOT/scripts/bench-memory.sh" >>"$LOG" 2>&1 ||
    { tail -20 "$LOG" >&2; die "seeding $DB failed (log: $LOG)"; }
  seeded || die "$DB is still not seeded (log: $LOG)"
fi

"$IBEX_ROOT/scripts/stack.sh" set-sidecar-password dev
# shellcheck disable=SC1090
source "$IBEX_DATA/dev/secrets.env"
APP_URL="postgres://ibex_sidecar:$IBEX_SIDECAR_PASSWORD@127.0.0.1:$IBEX_PG_PORT/$DB"
REDIS_URL="redis://127.0.0.1:$IBEX_REDIS_PORT/2"
# The dev stack's S3 settings (IBEX_S3_ENDPOINT, IBEX_S3_REGION, IBEX_S3_ACCESS_KEY_ID,
# IBEX_S3_SECRET_ACCESS_KEY), as every `ibex serve` gets them.
eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev | grep '^IBEX_S3_')"
# Every run starts cold: no embedding cached by an earlier run (its queries would all be hits),
# and a hot cache rebuilt from Postgres at start, which is waited for below. Database 2 holds
# nothing but the benchmark's.
redis-cli -p "$IBEX_REDIS_PORT" -n 2 FLUSHDB >/dev/null

# The benchmark measures latency, not the per-token rate limit of the embedding endpoints: its
# one token may embed as fast as the sidecar answers.
IBEX_DATABASE_URL=$APP_URL IBEX_REDIS_URL=$REDIS_URL IBEX_HTTP_ADDR=$HTTP_ADDR IBEX_GRPC_ADDR=$GRPC_ADDR \
IBEX_UPSTREAM_BASE_URL=http://$LLM_ADDR/v1 \
IBEX_EMBED_RATE_PER_SECOND=1000000 IBEX_EMBED_RATE_BURST=1000000 \
IBEX_S3_ENDPOINT=$IBEX_S3_ENDPOINT IBEX_S3_REGION=$IBEX_S3_REGION \
IBEX_S3_ACCESS_KEY_ID=$IBEX_S3_ACCESS_KEY_ID IBEX_S3_SECRET_ACCESS_KEY=$IBEX_S3_SECRET_ACCESS_KEY \
IBEX_MODEL_DIR=$IBEX_MODEL_DIR IBEX_ORT_LIBRARY=$IBEX_ORT_LIB IBEX_LOG=warn \
  "$IBEX_BIN" serve >>"$LOG" 2>&1 </dev/null &
SIDECAR_PID=$!
stop_sidecar() { kill -TERM "$SIDECAR_PID" 2>/dev/null || true; wait "$SIDECAR_PID" 2>/dev/null || true; }
trap stop_sidecar EXIT
for _ in $(seq 600); do
  curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null 2>&1 && break
  kill -0 "$SIDECAR_PID" 2>/dev/null || { tail -20 "$LOG" >&2; die "the sidecar exited (log: $LOG)"; }
  sleep 0.1
done
curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null || die "the sidecar was not ready within 60 s (log: $LOG)"
# The hot cache is rebuilt at start (100 agents): wait for its marker before measuring.
for _ in $(seq 1200); do
  [ -n "$(redis-cli -p "$IBEX_REDIS_PORT" -n 2 GET ibex:hot:v1:ready)" ] && break
  sleep 0.1
done
[ -n "$(redis-cli -p "$IBEX_REDIS_PORT" -n 2 GET ibex:hot:v1:ready)" ] || die "the hot cache was not built within 120 s"

IBEX_BENCH_URL_100K=$SUPER_URL IBEX_BENCH_GRPC=$GRPC_ADDR IBEX_BENCH_HTTP=$HTTP_ADDR IBEX_BENCH_LLM=$LLM_ADDR \
IBEX_BENCH_APP_URL=$APP_URL IBEX_BENCH_SIDECAR_PID=$SIDECAR_PID \
IBEX_MODEL_DIR=$IBEX_MODEL_DIR IBEX_ORT_LIB=$IBEX_ORT_LIB \
  "$CARGO_TARGET_DIR/release/$BENCH"
