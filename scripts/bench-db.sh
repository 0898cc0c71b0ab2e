# Sourced by the bench scripts (after env.sh): the dev cluster's benchmark databases, which keep
# their seeded rows between runs.
#
#   bench_db_url <db>       superuser URL of <db> over the dev cluster's socket
#   bench_db_current <db>   makes <db> exist and carry every migration: newer migrations are
#                           applied forward (what a deployment does, seeded rows kept); when that
#                           is refused (an applied migration changed) or <db> is missing, it is
#                           created again from zero (empty: the bench seeds it)
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
