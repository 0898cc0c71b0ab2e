# Sourced by the bench scripts (after env.sh): the dev cluster's benchmark databases, which keep
# their seeded rows between runs.
#
#   bench_db_url <db>       superuser URL of <db> over the dev cluster's socket
#   bench_db_current <db>   makes <db> exist and carry every migration: newer migrations are
#                           applied forward (what a deployment does, seeded rows kept); when that
#                           is refused (an applied migration changed) or <db> is missing, it is
#                           created again from zero (empty: the bench seeds it)
#
#   bench_sidecar_start <db> <log> [VAR=value ...]
#                           a release `ibex serve` over <db> as the sidecar's login, with the dev
#                           stack's Redis and S3, on IBEX_BENCH_HTTP_PORT / IBEX_BENCH_GRPC_PORT
#                           (8790 / 8791), ready with its archive store up; stopped on exit.
#                           Sets HTTP_ADDR.
#
# A database records the migrations it carries as its comment (a hash of sql/migrations).
BENCH_SOCKET=$IBEX_DATA/dev/run
BENCH_MIGRATIONS=$(cat "$IBEX_ROOT"/sql/migrations/*.sql "$IBEX_ROOT"/sql/api/* | sha256sum | cut -c1-16)

psql_admin() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$BENCH_SOCKET" -p "$IBEX_PG_PORT" -U postgres "$@"; }
bench_db_url() { echo "postgres://postgres@localhost/$1?host=$BENCH_SOCKET&port=$IBEX_PG_PORT"; }

bench_db_current() {
  local db=$1 have stamp
  local want="migrations $BENCH_MIGRATIONS"
  have=$(psql_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
  stamp=""
  # Database comments are shared objects' comments: pg_shdescription, read by shobj_description.
  [ -n "$have" ] && stamp=$(psql_admin -d postgres -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$db'")
  [ "$stamp" = "$want" ] && return 0
  if [ -n "$have" ] && "$CARGO_TARGET_DIR/release/ibex" migrate --database-url "$(bench_db_url "$db")" >/dev/null 2>&1; then
    log "bench: $db migrated forward"
  else
    log "bench: (re)creating $db"
    psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    "$CARGO_TARGET_DIR/release/ibex" migrate --database-url "$(bench_db_url "$db")" >/dev/null
  fi
  psql_admin -d postgres -c "COMMENT ON DATABASE $db IS '$want'"
}

bench_sidecar_start() {
  local db=$1 log=$2; shift 2
  HTTP_ADDR=127.0.0.1:${IBEX_BENCH_HTTP_PORT:-8790}
  local grpc_addr=127.0.0.1:${IBEX_BENCH_GRPC_PORT:-8791}
  "$IBEX_ROOT/scripts/stack.sh" set-sidecar-password dev
  eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev)"
  # shellcheck disable=SC1090
  source "$IBEX_DATA/dev/secrets.env"
  : >"$log"
  env IBEX_DATABASE_URL="postgres://ibex_sidecar:$IBEX_SIDECAR_PASSWORD@127.0.0.1:$IBEX_PG_PORT/$db" \
    IBEX_HTTP_ADDR="$HTTP_ADDR" IBEX_GRPC_ADDR="$grpc_addr" \
    IBEX_S3_ENDPOINT="$IBEX_S3_ENDPOINT" IBEX_S3_REGION="$IBEX_S3_REGION" \
    IBEX_S3_ACCESS_KEY_ID="$IBEX_S3_ACCESS_KEY_ID" IBEX_S3_SECRET_ACCESS_KEY="$IBEX_S3_SECRET_ACCESS_KEY" \
    IBEX_HOT_CACHE_CONSUMER=false IBEX_MODEL_DIR="$IBEX_MODEL_DIR" IBEX_ORT_LIBRARY="$IBEX_ORT_LIB" IBEX_LOG=warn "$@" \
    "$CARGO_TARGET_DIR/release/ibex" serve >>"$log" 2>&1 </dev/null &
  BENCH_SIDECAR_PID=$!
  trap 'kill -TERM "$BENCH_SIDECAR_PID" 2>/dev/null || true; wait "$BENCH_SIDECAR_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 600); do
    curl -fsS "http://$HTTP_ADDR/readyz" 2>/dev/null | grep -q '"status":"up"' && break
    kill -0 "$BENCH_SIDECAR_PID" 2>/dev/null || { tail -20 "$log" >&2; die "the sidecar exited (log: $log)"; }
    sleep 0.1
  done
  curl -fsS "http://$HTTP_ADDR/readyz" | grep -q '"status":"up"' ||
    die "the sidecar or its archive store was not ready within 60 s (log: $log)"
}
