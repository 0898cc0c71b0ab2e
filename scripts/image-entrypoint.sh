#!/usr/bin/env bash
# Starts PostgreSQL 15 with ibex_pg preloaded: the PostgreSQL image's entrypoint
# (/usr/local/bin/ibex-postgres, installed by image-install.sh). scripts/test-image.sh starts it
# the same way in its debootstrap root. Run as root, it runs PostgreSQL as the postgres user.
#
# The first start makes the cluster in $PGDATA (UTF-8, C.UTF-8; the local socket trusted, TCP
# logins by password, scram-sha-256, from any address) and the database $IBEX_DATABASE. Every start
# rewrites $PGDATA/ibex.conf, which postgresql.conf includes last: where to listen, then the IBEX
# settings from pg-conf.sh (the dev and test stacks use the same). Settings of your own: ALTER
# SYSTEM, or arguments (`-c name=value`), which come after both.
#
# Environment:
#   PGDATA                 data directory (/var/lib/postgresql/data)
#   POSTGRES_PASSWORD      the postgres role's password, set when the cluster is made; without it
#                          only the local socket lets postgres in
#   IBEX_DATABASE          the database made at the first start, where ibex_pg's background
#                          workers run and where `ibex migrate` goes (ibex)
#   PGPORT                 port (5432)
#   IBEX_LISTEN_ADDRESSES  listen_addresses ('*')
#   IBEX_SOCKET_DIR        unix_socket_directories (/var/run/postgresql)
#
#   ibex-postgres [-c name=value ...]   start PostgreSQL in the foreground (arguments to postgres)
#   ibex-postgres COMMAND [ARGS...]     run another command (e.g. bash)
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
IBEX_PREFIX=/usr/local/lib/ibex
MODEL_DIR=/usr/local/share/ibex/model
PGDATA=${PGDATA:-/var/lib/postgresql/data}
IBEX_DATABASE=${IBEX_DATABASE:-ibex}
PGPORT=${PGPORT:-5432}
IBEX_LISTEN_ADDRESSES=${IBEX_LISTEN_ADDRESSES:-*}
IBEX_SOCKET_DIR=${IBEX_SOCKET_DIR:-/var/run/postgresql}

log() { printf '[ibex-postgres] %s\n' "$*" >&2; }
die() { printf '[ibex-postgres] error: %s\n' "$*" >&2; exit 1; }

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then exec "$@"; fi

[[ "$IBEX_DATABASE" =~ ^[a-z_][a-z0-9_]*$ ]] || die "IBEX_DATABASE must be a plain lower-case name: $IBEX_DATABASE"
[[ "$PGPORT" =~ ^[0-9]+$ ]] || die "PGPORT must be a number: $PGPORT"

# PostgreSQL refuses to run as root.
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  install -d -o postgres -g postgres -m 700 "$PGDATA"
  install -d -o postgres -g postgres -m 2775 "$IBEX_SOCKET_DIR"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  log "creating the cluster in $PGDATA"
  pwfile=()
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pw=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
    [ ${#as_pg[@]} -eq 0 ] || chown postgres "$pw"
    pwfile=(--pwfile="$pw")
  else
    log "POSTGRES_PASSWORD is not set: the postgres role has no password, so only the local socket lets it in"
  fi
  "${as_pg[@]}" "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 "${pwfile[@]}" >/dev/null
  [ ${#pwfile[@]} -eq 0 ] || rm -f "$pw"
  # Clients come from other containers: any address, always with a password.
  echo "host all all all scram-sha-256" | "${as_pg[@]}" tee -a "$PGDATA/pg_hba.conf" >/dev/null
  # Single-user mode, before ibex.conf is included: nothing is preloaded yet.
  echo "CREATE DATABASE $IBEX_DATABASE" | "${as_pg[@]}" "$PG_BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
  echo "include_if_exists = 'ibex.conf'" | "${as_pg[@]}" tee -a "$PGDATA/postgresql.conf" >/dev/null
  log "cluster made, database $IBEX_DATABASE created"
fi

{ cat <<CONF
# Written by ibex-postgres at every start; edits are overwritten.
port = $PGPORT
listen_addresses = '$IBEX_LISTEN_ADDRESSES'
unix_socket_directories = '$IBEX_SOCKET_DIR'
CONF
  "$IBEX_PREFIX/pg-conf.sh" "$MODEL_DIR" "$IBEX_PREFIX/libonnxruntime.so.1.32.0" "$IBEX_DATABASE"
} | "${as_pg[@]}" tee "$PGDATA/ibex.conf.tmp" >/dev/null
"${as_pg[@]}" mv "$PGDATA/ibex.conf.tmp" "$PGDATA/ibex.conf"

unset POSTGRES_PASSWORD
exec "${as_pg[@]}" "$PG_BIN/postgres" -D "$PGDATA" "$@"
