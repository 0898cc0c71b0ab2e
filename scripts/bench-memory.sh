#!/usr/bin/env bash
# `make bench-memory`: see bench/src/bin/bench_memory.rs. Runs against the dev cluster, in three
# databases of its own (ibex_bench_10k, ibex_bench_100k, ibex_bench_quality) that keep their
# seeded data between runs; newer migrations are applied forward, and a database is recreated
# when that fails (an applied migration changed) or the corpus changes.
source "$(dirname "$0")/env.sh"
IBEX_BIN=$CARGO_TARGET_DIR/release/ibex
"$IBEX_ROOT/scripts/stack.sh" up dev
cargo build --release -p ibex_bench --bin bench_memory
SOCKET=$IBEX_DATA/dev/run
psql_admin() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$SOCKET" -p "$IBEX_PG_PORT" -U postgres "$@"; }
MIGRATIONS=$(cat "$IBEX_ROOT"/sql/migrations/*.sql | sha256sum | cut -c1-16)

for db in ibex_bench_10k ibex_bench_100k ibex_bench_quality; do
  # A database seeded under other migrations is stale: start it again from zero.
  have=$(psql_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
  stamp=""
  [ -n "$have" ] && stamp=$(psql_admin -d "$db" -c "SELECT description FROM pg_description WHERE objoid = (SELECT oid FROM pg_database WHERE datname = '$db')" 2>/dev/null || true)
  # Newer migrations: apply them forward (what a deployment does) and keep the seeded rows.
  # If that is refused (an applied migration changed), the database starts again from zero.
  if [ -n "$have" ] && [ "$stamp" != "migrations $MIGRATIONS" ] &&
     "$IBEX_BIN" migrate --database-url "postgres://postgres@localhost/$db?host=$SOCKET&port=$IBEX_PG_PORT" >/dev/null 2>&1; then
    log "bench-memory: $db migrated forward"
    psql_admin -d postgres -c "COMMENT ON DATABASE $db IS 'migrations $MIGRATIONS'"
    stamp="migrations $MIGRATIONS"
  fi
  if [ "$stamp" != "migrations $MIGRATIONS" ]; then
    log "bench-memory: (re)creating $db"
    psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    "$IBEX_BIN" migrate --database-url "postgres://postgres@localhost/$db?host=$SOCKET&port=$IBEX_PG_PORT" >/dev/null
    psql_admin -d postgres -c "COMMENT ON DATABASE $db IS 'migrations $MIGRATIONS'"
  fi
done

url() { echo "postgres://postgres@localhost/$1?host=$SOCKET&port=$IBEX_PG_PORT"; }
IBEX_BENCH_URL_10K=$(url ibex_bench_10k) IBEX_BENCH_URL_100K=$(url ibex_bench_100k) \
IBEX_BENCH_URL_QUALITY=$(url ibex_bench_quality) \
  "$CARGO_TARGET_DIR/release/bench_memory"
