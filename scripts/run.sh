#!/usr/bin/env bash
# `make run`: the dev stack up (Postgres, Redis, Garage S3), migrations applied, the demo org
# bootstrapped, the sidecar serving in the background, and how to connect.
#
#   run.sh                bring everything up (restarts the sidecar with the binary just built)
#   run.sh stop-sidecar   stop the background sidecar (`make stop` does, before the stack)
#
# The proxy forwards to IBEX_UPSTREAM_BASE_URL (with IBEX_UPSTREAM_API_KEY) when they are set in
# the environment of `make run`.
source "$(dirname "$0")/env.sh"
IBEX_BIN=$CARGO_TARGET_DIR/release/ibex
SIDECAR_DIR=$IBEX_DATA/dev
PID_FILE=$SIDECAR_DIR/sidecar.pid
SIDECAR_LOG=$SIDECAR_DIR/sidecar.log
HTTP_ADDR=127.0.0.1:$IBEX_HTTP_PORT
GRPC_ADDR=127.0.0.1:$IBEX_GRPC_PORT

# Stops the sidecar this script started (by the pid it recorded, and only if that pid is still
# an `ibex serve`), giving it its shutdown grace period.
stop_sidecar() {
  [ -f "$PID_FILE" ] || return 0
  local pid; pid=$(cat "$PID_FILE")
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "ibex serve"; then
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    log "dev: sidecar stopped (pid $pid)"
  fi
  rm -f "$PID_FILE"
}

case "${1:-up}" in
  stop-sidecar) stop_sidecar; exit 0 ;;
  up) ;;
  *) die "usage: run.sh [up|stop-sidecar]" ;;
esac

"$IBEX_ROOT/scripts/stack.sh" up dev
eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev)"
"$IBEX_BIN" migrate --database-url "$IBEX_MIGRATE_DATABASE_URL"
"$IBEX_ROOT/scripts/stack.sh" set-sidecar-password dev

# IBEX_ORG_ID, IBEX_AGENT_ID, and IBEX_TOKEN the first time only (tokens are shown once).
IBEX_TOKEN=""
BOOTSTRAP=$("$IBEX_BIN" bootstrap --database-url "$IBEX_MIGRATE_DATABASE_URL")
eval "$BOOTSTRAP"

stop_sidecar
mkdir -p "$SIDECAR_DIR"
IBEX_DATABASE_URL=$IBEX_DATABASE_URL IBEX_REDIS_URL=$IBEX_REDIS_URL IBEX_HTTP_ADDR=$HTTP_ADDR \
IBEX_GRPC_ADDR=$GRPC_ADDR IBEX_MODEL_DIR=$IBEX_MODEL_DIR IBEX_ORT_LIBRARY=$IBEX_ORT_LIB \
IBEX_S3_ENDPOINT=$IBEX_S3_ENDPOINT IBEX_S3_REGION=$IBEX_S3_REGION \
IBEX_S3_ACCESS_KEY_ID=$IBEX_S3_ACCESS_KEY_ID IBEX_S3_SECRET_ACCESS_KEY=$IBEX_S3_SECRET_ACCESS_KEY \
  nohup "$IBEX_BIN" serve >>"$SIDECAR_LOG" 2>&1 </dev/null &
echo $! >"$PID_FILE"
log "dev: sidecar starting (pid $(cat "$PID_FILE"), log $SIDECAR_LOG)"
ready=""
for _ in $(seq 600); do
  if curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$(cat "$PID_FILE")" 2>/dev/null || { tail -20 "$SIDECAR_LOG" >&2; die "the sidecar exited (log: $SIDECAR_LOG)"; }
  sleep 0.1
done
[ -n "$ready" ] || { tail -20 "$SIDECAR_LOG" >&2; die "the sidecar was not ready within 60 s (log: $SIDECAR_LOG)"; }

if [ -n "$IBEX_TOKEN" ]; then
  TOKEN_LINE="$IBEX_TOKEN   (admin, all scopes; shown only now: keep it)"
else
  TOKEN_LINE="issued at the first make run (shown once); new one: $IBEX_BIN token create --org $IBEX_ORG_ID --name me --scopes admin"
fi
# A token to sign in to the dashboard with, new at every run (admin of the demo org, valid one
# day): the first token above is shown once, this one each time.
DASHBOARD_TOKEN=$("$IBEX_BIN" token create --database-url "$IBEX_MIGRATE_DATABASE_URL" --org "$IBEX_ORG_ID" \
  --name "dashboard $(date -u +%FT%TZ)" --scopes admin --expires-in-days 1 2>/dev/null) ||
  die "creating a dashboard token failed"
UPSTREAM=${IBEX_UPSTREAM_BASE_URL:-"none (set IBEX_UPSTREAM_BASE_URL and IBEX_UPSTREAM_API_KEY, then make run)"}

cat <<MSG

IBEX dev stack is up.
  PostgreSQL 15 + pgvector + ibex_pg   127.0.0.1:$IBEX_PG_PORT  database ibex
    application role:  psql '$IBEX_DATABASE_URL'
    superuser (local): make psql
  Redis                                $IBEX_REDIS_URL
  S3 (Garage $GARAGE_VERSION)                    $IBEX_S3_ENDPOINT  region $IBEX_S3_REGION, path-style
    access key: $IBEX_S3_ACCESS_KEY_ID  (secret in $IBEX_DATA/dev/secrets.env)
  Sidecar (ibex serve)                 HTTP http://$HTTP_ADDR   gRPC $GRPC_ADDR (ibex.context.v1.ContextService)
    log: $SIDECAR_LOG
    proxy upstream: $UPSTREAM
    management API docs: http://$HTTP_ADDR/docs  (OpenAPI: http://$HTTP_ADDR/openapi.json)
    MCP endpoint:        http://$HTTP_ADDR/mcp   (a token with memories:read / memories:write)
    CLI:                 $IBEX_BIN agents list   (export IBEX_TOKEN=<the token below> first)
  Data directory                       $IBEX_DATA/dev

Dashboard:        http://$HTTP_ADDR/dashboard
  sign in with:   $DASHBOARD_TOKEN   (admin of "demo", valid 24 h; a new one at each make run)

Demo org "demo":  $IBEX_ORG_ID
Agent "assistant": $IBEX_AGENT_ID
API token:        $TOKEN_LINE

Try:  make psql  then  SELECT ibex_redact_pii('mail me at jane@example.com');
      curl -s http://$HTTP_ADDR/v1/embed -H "authorization: Bearer \$TOKEN" \\
           -H 'content-type: application/json' -d '{"text": "hello"}' | head -c 200
      curl -s http://$HTTP_ADDR/v1/chat/completions -H "authorization: Bearer \$TOKEN" \\
           -H "x-ibex-agent-id: $IBEX_AGENT_ID" -H 'content-type: application/json' \\
           -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
Stop: make stop
MSG
