#!/usr/bin/env bash
# The local stack: PostgreSQL 15 clusters (with ibex_pg preloaded) and Redis servers, all under
# .ibex/data on non-default ports. Two stacks exist side by side: "dev" (make run) and "test"
# (make test), so running the tests never touches the data you are working with.
#
#   stack.sh up dev|test        create what is missing, start what is stopped
#   stack.sh down dev|test      stop
#   stack.sh status dev|test
#   stack.sh reset-db test      drop and recreate the test database (migrations from zero)
#   stack.sh urls dev|test      print connection strings (for eval)
source "$(dirname "$0")/env.sh"

stack=${2:-dev}
case "$stack" in
  dev)  PG_PORT=$IBEX_PG_PORT; REDIS_PORT=$IBEX_REDIS_PORT; DB=ibex ;;
  test) PG_PORT=$IBEX_TEST_PG_PORT; REDIS_PORT=$IBEX_TEST_REDIS_PORT; DB=ibex_test ;;
  *) die "unknown stack '$stack' (dev or test)" ;;
esac
PGDATA_DIR=$IBEX_DATA/$stack/pg
SOCKET_DIR=$IBEX_DATA/$stack/run
REDIS_DIR=$IBEX_DATA/$stack/redis
SECRETS=$IBEX_DATA/$stack/secrets.env
PG_LOG=$IBEX_DATA/$stack/postgres.log

pg_running() { [ -f "$PGDATA_DIR/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; }
redis_running() { redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; }
psql_admin() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"; }

ensure_secrets() {
  # The sidecar's database password (older stacks named it IBEX_APP_PASSWORD: it is reused).
  if ! grep -q '^IBEX_SIDECAR_PASSWORD=' "$SECRETS" 2>/dev/null; then
    umask 077
    local old
    # (No secrets file yet on a fresh machine: sed fails, which must not end the script.)
    old=$(sed -n 's/^IBEX_APP_PASSWORD=//p' "$SECRETS" 2>/dev/null || true)
    printf 'IBEX_SIDECAR_PASSWORD=%s\n' "${old:-$(head -c 18 /dev/urandom | base64 | tr -d '/+=' )}" >> "$SECRETS"
  fi
  # shellcheck disable=SC1090
  source "$SECRETS"
}

write_pg_config() {
  # Regenerated at every start so changed settings apply; postgresql.conf only includes it.
  cat > "$PGDATA_DIR/ibex.conf.tmp" <<CONF
# Written by scripts/stack.sh; edits are overwritten at the next start.
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCKET_DIR'
shared_preload_libraries = 'ibex_pg'
max_connections = 200
shared_buffers = 512MB
maintenance_work_mem = 512MB
work_mem = 16MB
max_worker_processes = 16
ibex.model_dir = '$IBEX_MODEL_DIR'
ibex.ort_library_path = '$IBEX_ORT_LIB'
ibex.database = '$DB'
ibex.extraction_workers = 2
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = info
CONF
  as_pg cp "$PGDATA_DIR/ibex.conf.tmp" "$PGDATA_DIR/ibex.conf"
  rm -f "$PGDATA_DIR/ibex.conf.tmp"
}

pg_init() {
  [ -f "$PGDATA_DIR/PG_VERSION" ] && return
  log "$stack: creating PostgreSQL cluster in $PGDATA_DIR (port $PG_PORT)"
  mkdir -p "$IBEX_DATA/$stack"
  ensure_traversable "$IBEX_DATA/$stack"
  install -d -o "$IBEX_PG_OS_USER" -m 700 "$PGDATA_DIR" "$SOCKET_DIR"
  # Unix-socket connections are trusted (the socket directory is private to the postgres user
  # and root); TCP connections need a password.
  as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >/dev/null
  echo "include_if_exists = 'ibex.conf'" | as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
}

pg_start() {
  pg_init
  write_pg_config
  if pg_running; then return; fi
  install -d -o "$IBEX_PG_OS_USER" -m 700 "$SOCKET_DIR"
  touch "$PG_LOG" && chown "$IBEX_PG_OS_USER" "$PG_LOG"
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 60 start >/dev/null ||
    { tail -20 "$PG_LOG" >&2; die "$stack: PostgreSQL failed to start (log: $PG_LOG)"; }
  log "$stack: PostgreSQL running on 127.0.0.1:$PG_PORT"
}

pg_ensure_database() {
  ensure_secrets
  psql_admin -d postgres <<SQL
SELECT 'CREATE DATABASE $DB' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB') \gexec
SQL
  # The sidecar's login is created by migration 0011; its password is this stack's secret.
  psql_admin -d postgres -v pw="$IBEX_SIDECAR_PASSWORD" <<'SQL'
SELECT format('ALTER ROLE ibex_sidecar PASSWORD %L', :'pw') WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ibex_sidecar') \gexec
SQL
}

pg_stop() {
  if pg_running; then as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null; log "$stack: PostgreSQL stopped"; fi
}

# Memory: Redis holds an embedding cache entry per distinct text and org, so without a bound a
# flood of distinct texts grows it until the host runs out. maxmemory (IBEX_REDIS_MAXMEMORY,
# 256mb by default) with allkeys-lru evicts the least recently used keys of any kind. Not
# volatile-lru: the hot cache's keys carry no TTL, so under a volatile policy a full Redis would
# refuse their writes. Evicting them is safe: an agent whose set is gone reads it from Postgres
# through the cold search until the consumer writes it again, and a missing `ready` marker makes
# readers fall back to Postgres and the consumer rebuild everything (see docs/ARCHITECTURE.md).
redis_configure() {
  redis-cli -p "$REDIS_PORT" CONFIG SET maxmemory "$IBEX_REDIS_MAXMEMORY" >/dev/null
  redis-cli -p "$REDIS_PORT" CONFIG SET maxmemory-policy allkeys-lru >/dev/null
}

redis_start() {
  # A server started by an earlier version of this script gets the memory bound too.
  if redis_running; then redis_configure; return; fi
  mkdir -p "$REDIS_DIR"
  # Redis holds only derived data (the hot cache), rebuilt from Postgres: no persistence.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" --daemonize yes \
    --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --save '' --appendonly no \
    --maxmemory "$IBEX_REDIS_MAXMEMORY" --maxmemory-policy allkeys-lru >/dev/null
  for _ in $(seq 50); do redis_running && break; sleep 0.1; done
  redis_running || die "$stack: Redis failed to start (log: $REDIS_DIR/redis.log)"
  log "$stack: Redis running on 127.0.0.1:$REDIS_PORT (maxmemory $IBEX_REDIS_MAXMEMORY, allkeys-lru)"
}

redis_stop() {
  if redis_running; then redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; log "$stack: Redis stopped"; fi
}

urls() {
  ensure_secrets
  cat <<URLS
IBEX_MIGRATE_DATABASE_URL='postgres://postgres@localhost/$DB?host=$SOCKET_DIR&port=$PG_PORT'
IBEX_DATABASE_URL='postgres://ibex_sidecar:$IBEX_SIDECAR_PASSWORD@127.0.0.1:$PG_PORT/$DB'
IBEX_REDIS_URL='redis://127.0.0.1:$REDIS_PORT/'
IBEX_PG_SOCKET_DIR='$SOCKET_DIR'
IBEX_PG_PORT_ACTIVE='$PG_PORT'
IBEX_DB='$DB'
URLS
}

case "${1:-}" in
  up) pg_start; pg_ensure_database; redis_start ;;
  down) redis_stop; pg_stop ;;
  restart-pg) pg_stop; pg_start ;;
  status)
    pg_running && echo "postgres: running on $PG_PORT" || echo "postgres: stopped"
    redis_running && echo "redis: running on $REDIS_PORT" || echo "redis: stopped" ;;
  running) pg_running ;;
  reset-db)
    pg_start
    # Settings a previous test run left with ALTER SYSTEM go too.
    psql_admin -d postgres -c "ALTER SYSTEM RESET ALL" -c "SELECT pg_reload_conf()" >/dev/null
    psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
    pg_ensure_database ;;
  set-sidecar-password | set-app-password) pg_ensure_database ;;
  urls) urls ;;
  psql) shift 2; psql_admin -d "$DB" "$@" ;;
  *) die "usage: stack.sh up|down|status|reset-db|urls|psql dev|test" ;;
esac
