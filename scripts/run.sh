#!/usr/bin/env bash
# `make run`: the dev stack up, migrations applied, and how to connect.
source "$(dirname "$0")/env.sh"
IBEX_BIN=$CARGO_TARGET_DIR/release/ibex

"$IBEX_ROOT/scripts/stack.sh" up dev
eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev)"
"$IBEX_BIN" migrate --database-url "$IBEX_MIGRATE_DATABASE_URL"
"$IBEX_ROOT/scripts/stack.sh" set-app-password dev

cat <<MSG

IBEX dev stack is up.
  PostgreSQL 15 + pgvector + ibex_pg   127.0.0.1:$IBEX_PG_PORT  database ibex
    application role:  psql '$IBEX_DATABASE_URL'
    superuser (local): make psql
  Redis                                $IBEX_REDIS_URL
  Data directory                       $IBEX_DATA/dev

Try:  make psql  then  SELECT ibex_redact_pii('mail me at jane@example.com');
Stop: make stop
MSG
