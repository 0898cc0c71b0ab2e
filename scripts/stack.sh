#!/usr/bin/env bash
# The local stack: PostgreSQL 15 clusters (with ibex_pg preloaded), Redis servers and Garage S3
# servers, all under .ibex/data on non-default ports. Two stacks exist side by side: "dev"
# (make run) and "test" (make test), so running the tests never touches the data you are working with.
#
#   stack.sh up dev|test        create what is missing, start what is stopped (Postgres, Redis, Garage)
#   stack.sh down dev|test      stop
#   stack.sh status dev|test
#   stack.sh reset-db test      drop and recreate the test database (migrations from zero)
#   stack.sh urls dev|test      print connection strings and S3 settings (for eval)
#   stack.sh s3-stop dev|test   stop only Garage, returning once its process is gone (tests use
#                               it to simulate an S3 outage)
#   stack.sh s3-start dev|test  start only Garage, returning once its S3 API answers
#   stack.sh replica-up dev|test    start a streaming replica (hot standby) of Postgres on the
#                               next port, made afresh by pg_basebackup
#   stack.sh replica-down dev|test
#
# Garage (S3, built once per machine by setup.sh) keeps its data under .ibex/data/<stack>/s3. Its
# first start sets the single node up: a layout, and an access key allowed to create buckets,
# kept in the stack's secrets.env as IBEX_S3_ACCESS_KEY_ID / IBEX_S3_SECRET_ACCESS_KEY. No bucket
# is created here: the sidecar creates its own (ibex-sessions) through the S3 API.
source "$(dirname "$0")/env.sh"

stack=${2:-dev}
case "$stack" in
  dev)  PG_PORT=$IBEX_PG_PORT; REDIS_PORT=$IBEX_REDIS_PORT; DB=ibex
        S3_PORT=$IBEX_S3_PORT; S3_RPC_PORT=$IBEX_S3_RPC_PORT; S3_ADMIN_PORT=$IBEX_S3_ADMIN_PORT ;;
  test) PG_PORT=$IBEX_TEST_PG_PORT; REDIS_PORT=$IBEX_TEST_REDIS_PORT; DB=ibex_test
        S3_PORT=$IBEX_TEST_S3_PORT; S3_RPC_PORT=$IBEX_TEST_S3_RPC_PORT; S3_ADMIN_PORT=$IBEX_TEST_S3_ADMIN_PORT ;;
  *) die "unknown stack '$stack' (dev or test)" ;;
esac
PGDATA_DIR=$IBEX_DATA/$stack/pg
SOCKET_DIR=$IBEX_DATA/$stack/run
REDIS_DIR=$IBEX_DATA/$stack/redis
SECRETS=$IBEX_DATA/$stack/secrets.env
PG_LOG=$IBEX_DATA/$stack/postgres.log
S3_DIR=$IBEX_DATA/$stack/s3
REPLICA_PORT=$((PG_PORT + 1))
REPLICA_DIR=$IBEX_DATA/$stack/pg-replica
REPLICA_SOCKET_DIR=$IBEX_DATA/$stack/run-replica
REPLICA_LOG=$IBEX_DATA/$stack/postgres-replica.log
GARAGE_TOML=$S3_DIR/garage.toml
GARAGE_PID=$S3_DIR/garage.pid
GARAGE_LOG=$S3_DIR/garage.log
# Written once the first start's set-up (layout, access key) is complete.
GARAGE_SETUP_DONE=$S3_DIR/setup.done
S3_KEY_NAME=ibex-$stack
S3_REGION=garage

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

# write_pg_config [data dir] [port] [socket dir]: the primary's by default; the replica's differ
# only in where they listen.
write_pg_config() {
  local dir=${1:-$PGDATA_DIR} port=${2:-$PG_PORT} socket=${3:-$SOCKET_DIR}
  # Regenerated at every start so changed settings apply; postgresql.conf only includes it. The
  # IBEX settings come from pg-conf.sh, which the PostgreSQL image (Dockerfile.postgres) uses too.
  { cat <<CONF
# Written by scripts/stack.sh; edits are overwritten at the next start.
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$socket'
CONF
    "$IBEX_ROOT/scripts/pg-conf.sh" "$IBEX_MODEL_DIR" "$IBEX_ORT_LIB" "$DB"
  } > "$dir/ibex.conf.tmp"
  as_pg cp "$dir/ibex.conf.tmp" "$dir/ibex.conf"
  rm -f "$dir/ibex.conf.tmp"
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

# Starts PostgreSQL after its postmaster was killed. Until the killed process is reaped it is a
# zombie that `pg_ctl status` takes for a running server, and until its orphaned backends have
# exited a new postmaster refuses the old shared memory: so wait for the one, retry the other,
# and call it running only when it accepts connections. Up to 60 s.
pg_recover() {
  local pid
  for _ in $(seq 200); do
    if "$PG_BIN/pg_isready" -q -h "$SOCKET_DIR" -p "$PG_PORT"; then
      log "$stack: PostgreSQL running on 127.0.0.1:$PG_PORT"; return 0
    fi
    pid=$(head -1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true)
    # A postmaster still there (starting, recovering, or a zombie not reaped yet): wait.
    if [ -n "$pid" ] && [ -n "$(ps -o stat= -p "$pid" 2>/dev/null)" ]; then sleep 0.3; continue; fi
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 10 start >/dev/null 2>&1 || sleep 0.3
  done
  tail -20 "$PG_LOG" >&2
  die "$stack: PostgreSQL did not start again within 60 s (log: $PG_LOG)"
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

# A streaming replica of the stack's cluster (hot standby, read-only on the next port). Each
# start makes it afresh from a base backup (pg_basebackup, seconds for a test cluster): the
# replica holds nothing of its own, and a copy left from an earlier run could not catch up once
# the primary has recycled its WAL. It replays everything the primary writes, databases dropped
# and created included, so it follows `reset-db`. Its background workers wait for promotion
# (they start at RecoveryFinished), so it only serves reads.
replica_running() { [ -f "$REPLICA_DIR/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" status >/dev/null 2>&1; }

replica_start() {
  pg_running || die "$stack: the replica needs the primary running (stack.sh up $stack)"
  if replica_running; then return; fi
  log "$stack: creating a streaming replica in $REPLICA_DIR (pg_basebackup)"
  rm -rf "$REPLICA_DIR"
  install -d -o "$IBEX_PG_OS_USER" -m 700 "$REPLICA_DIR" "$REPLICA_SOCKET_DIR"
  # -R writes standby.signal and primary_conninfo; the local replication connection is trusted.
  as_pg "$PG_BIN/pg_basebackup" -h "$SOCKET_DIR" -p "$PG_PORT" -U postgres -D "$REPLICA_DIR" -R -X stream -c fast ||
    { rm -rf "$REPLICA_DIR"; die "$stack: pg_basebackup failed"; }
  write_pg_config "$REPLICA_DIR" "$REPLICA_PORT" "$REPLICA_SOCKET_DIR"
  touch "$REPLICA_LOG" && chown "$IBEX_PG_OS_USER" "$REPLICA_LOG"
  as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" -l "$REPLICA_LOG" -w -t 60 start >/dev/null ||
    { tail -20 "$REPLICA_LOG" >&2; die "$stack: the replica failed to start (log: $REPLICA_LOG)"; }
  log "$stack: streaming replica running on 127.0.0.1:$REPLICA_PORT"
}

replica_stop() {
  if replica_running; then as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" -m fast -w stop >/dev/null; log "$stack: replica stopped"; fi
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

# ---- Garage (S3) -------------------------------------------------------------------------------

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Sets NAME=value in the secrets file (replacing an earlier value), which stays private (0600).
set_secret() {
  local name=$1 value=$2
  mkdir -p "$(dirname "$SECRETS")"
  ( umask 077
    { grep -v "^$name=" "$SECRETS" 2>/dev/null || true; printf '%s=%s\n' "$name" "$value"; } >"$SECRETS.tmp"
    mv "$SECRETS.tmp" "$SECRETS" )
  printf -v "$name" '%s' "$value"
}

# Garage's RPC secret (64 hex) and admin token: generated once, then kept in the secrets file.
ensure_s3_secrets() {
  ensure_secrets
  [ -n "${IBEX_GARAGE_RPC_SECRET:-}" ] || set_secret IBEX_GARAGE_RPC_SECRET "$(random_hex 32)"
  [ -n "${IBEX_GARAGE_ADMIN_TOKEN:-}" ] || set_secret IBEX_GARAGE_ADMIN_TOKEN "$(random_hex 32)"
}

write_garage_config() {
  # Regenerated at every start (read by the server when it starts, and by every CLI call); it
  # holds the secrets, so it is private. Path-style addressing only: no root_domain.
  ( umask 077
    mkdir -p "$S3_DIR/meta" "$S3_DIR/data"
    cat >"$GARAGE_TOML.tmp" <<TOML
# Written by scripts/stack.sh; edits are overwritten at the next start.
metadata_dir = "$S3_DIR/meta"
data_dir = "$S3_DIR/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$S3_RPC_PORT"
rpc_public_addr = "127.0.0.1:$S3_RPC_PORT"
rpc_secret = "$IBEX_GARAGE_RPC_SECRET"

[s3_api]
s3_region = "$S3_REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"

[admin]
api_bind_addr = "127.0.0.1:$S3_ADMIN_PORT"
admin_token = "$IBEX_GARAGE_ADMIN_TOKEN"
TOML
    mv "$GARAGE_TOML.tmp" "$GARAGE_TOML" )
  chmod 700 "$S3_DIR"
}

garage() { "$IBEX_GARAGE_BIN" -c "$GARAGE_TOML" "$@"; }

# A process that is gone, or a zombie not yet reaped, is not alive.
pid_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# The pid of this stack's Garage server, if one runs: the recorded pid when it still is a Garage
# of this stack's config (a stale pid file, or a reused pid, does not count), else a server of this
# config found by its exact command line (the pid file was lost), which is recorded again.
garage_pid() {
  local pid=""
  [ -f "$GARAGE_PID" ] && pid=$(cat "$GARAGE_PID" 2>/dev/null)
  if [ -n "$pid" ] && pid_alive "$pid" &&
     [ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" = "$IBEX_GARAGE_BIN -c $GARAGE_TOML server " ]; then
    echo "$pid"; return 0
  fi
  pid=$(pgrep -n -f -x -- "$IBEX_GARAGE_BIN -c $GARAGE_TOML server" 2>/dev/null) || return 1
  pid_alive "$pid" || return 1
  echo "$pid" >"$GARAGE_PID"
  echo "$pid"
}
garage_running() { garage_pid >/dev/null; }

# HTTP status of a local URL, 000 when nothing answers.
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }
# Garage's health endpoint (admin API, no token) says 200 once the cluster serves requests (the
# layout is applied and the node is up); 503 before.
garage_healthy() { [ "$(http_code "http://127.0.0.1:$S3_ADMIN_PORT/health")" = 200 ]; }
# The S3 API answers: any HTTP status (an unsigned request is refused with 403).
s3_answers() { [ "$(http_code "http://127.0.0.1:$S3_PORT/")" != 000 ]; }
garage_ready() { garage_healthy && s3_answers; }

# Set by garage_start when this run started the server: its pid, and where its log began.
GARAGE_STARTED=""
GARAGE_LOG_FROM=""

# Fails the start with the log's tail. A server this run started is stopped again (a half-started
# one, e.g. with its S3 port taken, would otherwise run on without an S3 API), so the next start
# begins clean.
garage_fail() {
  tail -20 "$GARAGE_LOG" >&2 2>/dev/null || true
  if [ -n "$GARAGE_STARTED" ] && pid_alive "$GARAGE_STARTED"; then
    kill -TERM "$GARAGE_STARTED" 2>/dev/null || true
    for _ in $(seq 100); do pid_alive "$GARAGE_STARTED" || break; sleep 0.1; done
    rm -f "$GARAGE_PID"
  fi
  die "$stack: $* (log: $GARAGE_LOG)"
}

# One of the servers of a Garage this run started (S3, admin, RPC) could not start (a port taken):
# Garage logs that and runs on without it.
garage_start_failed() {
  [ -n "$GARAGE_LOG_FROM" ] && tail -c "+$GARAGE_LOG_FROM" "$GARAGE_LOG" 2>/dev/null | grep -q "server exited with error"
}

# Waits (up to $2 seconds) for the condition $1, failing early if the server exits or could not
# start.
garage_wait() {
  local cond=$1 deadline=$(( $(date +%s) + $2 )) pid
  while ! "$cond"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    pid=$(cat "$GARAGE_PID" 2>/dev/null || true)
    { [ -n "$pid" ] && pid_alive "$pid"; } || garage_running || garage_fail "Garage exited"
    if garage_start_failed; then garage_fail "Garage could not start"; fi
    sleep 0.1
  done
}

# Starts and stops of one stack's Garage are serialised (two `up`s at once start one server).
garage_lock() {
  mkdir -p "$S3_DIR"
  exec 9>"$S3_DIR/lock"
  flock -w 120 9 || die "$stack: another stack.sh holds $S3_DIR/lock"
}

# The first start's set-up of the single node, each step skipped when already done (so a set-up
# that failed half-way completes at the next start): a layout with this node (zone dc1, 1G), and
# the stack's access key, allowed to create buckets. The key is kept in the secrets file; when the
# S3 data was deleted but the secrets file kept, the same key is imported again, so the credentials
# the sidecar and tests use never change.
garage_setup() {
  [ -f "$GARAGE_SETUP_DONE" ] && [ -n "${IBEX_S3_ACCESS_KEY_ID:-}" ] && return 0
  log "$stack: setting up Garage (first start): layout, access key $S3_KEY_NAME"
  local out="" node="" version
  # The CLI reaches the server over RPC, which may take a moment after the admin API answers.
  for _ in $(seq 50); do
    out=$(garage status 2>/dev/null) && node=$(grep -oE '^[0-9a-f]{16}\b' <<<"$out" | head -1) && [ -n "$node" ] && break
    sleep 0.2
  done
  [ -n "$node" ] || garage_fail "garage status gave no node id: $out"
  if grep -qE "^$node.*(NO ROLE ASSIGNED|pending)" <<<"$out"; then
    garage layout assign -z dc1 -c 1G "$node" >/dev/null || garage_fail "garage layout assign failed"
    version=$(garage layout show | sed -n 's/^Current cluster layout version: *//p') ||
      garage_fail "garage layout show failed"
    garage layout apply --version "$(( ${version:-0} + 1 ))" >/dev/null || garage_fail "garage layout apply failed"
  fi

  local id=${IBEX_S3_ACCESS_KEY_ID:-} secret=${IBEX_S3_SECRET_ACCESS_KEY:-}
  if [ -n "$id" ] && [ -n "$secret" ]; then
    garage key info "$id" >/dev/null 2>&1 ||
      garage key import --yes -n "$S3_KEY_NAME" "$id" "$secret" >/dev/null || garage_fail "garage key import failed"
  else
    # A key of this name created by a set-up that stopped before saving it is reused.
    out=$(garage key info --show-secret "$S3_KEY_NAME" 2>/dev/null) || out=$(garage key create "$S3_KEY_NAME") ||
      garage_fail "garage key create failed"
    id=$(sed -n 's/^Key ID:[[:space:]]*//p' <<<"$out")
    secret=$(sed -n 's/^Secret key:[[:space:]]*//p' <<<"$out")
    if ! [[ "$id" =~ ^GK[0-9a-f]+$ && "$secret" =~ ^[0-9a-f]+$ ]]; then
      die "$stack: could not read the access key from garage's output"
    fi
    set_secret IBEX_S3_ACCESS_KEY_ID "$id"
    set_secret IBEX_S3_SECRET_ACCESS_KEY "$secret"
  fi
  garage key allow --create-bucket "$id" >/dev/null || garage_fail "garage key allow failed"
  echo "node $node, key $id" >"$GARAGE_SETUP_DONE"
  log "$stack: Garage set up (node $node, access key $id in $SECRETS)"
}

require_garage() {
  [ -x "$IBEX_GARAGE_BIN" ] ||
    die "$stack: Garage $GARAGE_VERSION is not installed ($IBEX_GARAGE_BIN is missing): run make setup (scripts/setup.sh)"
}

garage_start() {
  require_garage
  garage_lock
  ensure_s3_secrets
  write_garage_config
  local t0 started=""
  t0=$(date +%s%N)
  if ! garage_running; then
    rm -f "$GARAGE_PID"
    GARAGE_LOG_FROM=$(( $(stat -c %s "$GARAGE_LOG" 2>/dev/null || echo 0) + 1 ))
    # Its own session (setsid), so a Ctrl-C in the terminal that ran `make run` does not reach
    # it; without the lock's descriptor, which would otherwise stay held as long as it runs.
    setsid nohup "$IBEX_GARAGE_BIN" -c "$GARAGE_TOML" server >>"$GARAGE_LOG" 2>&1 </dev/null 9>&- &
    GARAGE_STARTED=$!
    echo "$GARAGE_STARTED" >"$GARAGE_PID"
    started=1
    garage_wait s3_answers 30 || garage_fail "Garage's S3 API did not answer within 30 s"
  fi
  garage_setup
  garage_wait garage_ready 30 || garage_fail "Garage was not healthy within 30 s"
  # (Something else answering on a port Garage could not take looks ready: the log tells.)
  if garage_start_failed; then garage_fail "Garage could not start"; fi
  if [ -n "$started" ]; then
    log "$stack: Garage running on 127.0.0.1:$S3_PORT (S3; RPC $S3_RPC_PORT, admin $S3_ADMIN_PORT), ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  fi
}

garage_stop() {
  local pid
  [ -d "$S3_DIR" ] || return 0
  garage_lock
  pid=$(garage_pid) || { rm -f "$GARAGE_PID"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do pid_alive "$pid" || break; sleep 0.1; done
  if pid_alive "$pid"; then
    log "$stack: Garage (pid $pid) did not stop within 30 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 50); do pid_alive "$pid" || break; sleep 0.1; done
  fi
  if pid_alive "$pid"; then die "$stack: Garage (pid $pid) is still running"; fi
  rm -f "$GARAGE_PID"
  log "$stack: Garage stopped"
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
IBEX_PG_LOG='$PG_LOG'
IBEX_REPLICA_DATABASE_URL='postgres://ibex_sidecar:$IBEX_SIDECAR_PASSWORD@127.0.0.1:$REPLICA_PORT/$DB'
IBEX_REPLICA_MIGRATE_URL='postgres://postgres@localhost/$DB?host=$REPLICA_SOCKET_DIR&port=$REPLICA_PORT'
IBEX_S3_ENDPOINT='http://127.0.0.1:$S3_PORT'
IBEX_S3_REGION='$S3_REGION'
IBEX_S3_ACCESS_KEY_ID='${IBEX_S3_ACCESS_KEY_ID:-}'
IBEX_S3_SECRET_ACCESS_KEY='${IBEX_S3_SECRET_ACCESS_KEY:-}'
URLS
}

case "${1:-}" in
  # (Without Garage nothing is started: the stack would be incomplete.)
  up) require_garage; pg_start; pg_ensure_database; redis_start; garage_start ;;
  down) redis_stop; garage_stop; replica_stop; pg_stop ;;
  replica-up) replica_start ;;
  replica-down) replica_stop ;;
  restart-pg) pg_stop; pg_start ;;
  status)
    pg_running && echo "postgres: running on $PG_PORT" || echo "postgres: stopped"
    replica_running && echo "replica: running on $REPLICA_PORT"
    redis_running && echo "redis: running on $REDIS_PORT" || echo "redis: stopped"
    if pid=$(garage_pid); then
      if garage_ready; then health=healthy; else health="not ready"; fi
      echo "garage: running on $S3_PORT (pid $pid, $health)"
    elif [ -x "$IBEX_GARAGE_BIN" ]; then echo "garage: stopped"
    else echo "garage: not installed (make setup)"; fi ;;
  s3-start) garage_start ;;
  # The fault suite (tests/tests/faults.rs) kills these processes and brings them back.
  pids)
    echo "postmaster $(head -1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null)"
    echo "redis $(cat "$REDIS_DIR/redis.pid" 2>/dev/null)"
    echo "garage $(garage_pid || true)" ;;
  pg-recover) pg_recover ;;
  redis-start) redis_start ;;
  # The S3 server's data directory read-only (a bind mount over itself), and writable again.
  s3-readonly)
    mountpoint -q "$S3_DIR/data" || mount --bind "$S3_DIR/data" "$S3_DIR/data"
    mount -o remount,ro,bind "$S3_DIR/data" ;;
  s3-writable) while mountpoint -q "$S3_DIR/data"; do umount "$S3_DIR/data"; done ;;
  s3-stop) garage_stop ;;
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
  *) die "usage: stack.sh up|down|status|reset-db|urls|psql|s3-start|s3-stop|s3-readonly|s3-writable|redis-start|pg-recover|pids|replica-up|replica-down dev|test" ;;
esac
