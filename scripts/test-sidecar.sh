# Sourced by the tiers that drive a real `ibex serve` from outside (api-fuzz, browser): a
# release sidecar on free loopback ports over the TEST stack (its Postgres, Redis and Garage
# S3, from `stack.sh urls test`), and a fresh org with an admin token. `test_sidecar_stop`
# (trap it on EXIT) stops the sidecar and deletes the org with everything written into it.
#
#   test_sidecar_start <label> <workdir> [VAR=value ...]   extra settings for `ibex serve`
#   sets: HTTP_ADDR, SERVER_PID, ORG, TOKEN; the sidecar logs to <workdir>/sidecar.log

IBEX_BIN=${IBEX_BIN:-$CARGO_TARGET_DIR/release/ibex}
SERVER_PID=""
ORG=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

test_sidecar_start() {
  local label=$1 work=$2; shift 2
  [ -x "$IBEX_BIN" ] || die "$label: no $IBEX_BIN: cargo build --release -p ibex_sidecar --bin ibex"
  "$IBEX_ROOT/scripts/stack.sh" up test
  eval "$("$IBEX_ROOT/scripts/stack.sh" urls test)"
  "$IBEX_BIN" migrate --database-url "$IBEX_MIGRATE_DATABASE_URL" >/dev/null
  TEST_SIDECAR_LABEL=$label
  TEST_SIDECAR_LOG=$work/sidecar.log

  # A fresh org and an admin token of it (org-wide, every scope of the org).
  local slug
  slug="$label-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  ORG=$("$IBEX_ROOT/scripts/stack.sh" psql test -Atc \
    "SELECT id FROM ibex_ops.platform_create_org('$label $slug', '$slug', '{}')")
  TOKEN=$("$IBEX_BIN" token create --database-url "$IBEX_MIGRATE_DATABASE_URL" --org "$ORG" \
    --name "$label" --scopes admin 2>/dev/null)

  HTTP_ADDR=127.0.0.1:$(free_port)
  local grpc_addr=127.0.0.1:$(free_port)
  env IBEX_DATABASE_URL="$IBEX_DATABASE_URL" IBEX_REDIS_URL="$IBEX_REDIS_URL" IBEX_HTTP_ADDR="$HTTP_ADDR" \
    IBEX_GRPC_ADDR="$grpc_addr" IBEX_MODEL_DIR="$IBEX_MODEL_DIR" IBEX_ORT_LIBRARY="$IBEX_ORT_LIB" \
    IBEX_S3_ENDPOINT="$IBEX_S3_ENDPOINT" IBEX_S3_REGION="$IBEX_S3_REGION" \
    IBEX_S3_ACCESS_KEY_ID="$IBEX_S3_ACCESS_KEY_ID" IBEX_S3_SECRET_ACCESS_KEY="$IBEX_S3_SECRET_ACCESS_KEY" \
    IBEX_EMBED_WORKERS=1 IBEX_LOG="${IBEX_LOG:-warn}" "$@" \
    "$IBEX_BIN" serve >"$TEST_SIDECAR_LOG" 2>&1 </dev/null &
  SERVER_PID=$!
  local ready=""
  for _ in $(seq 600); do
    if curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$TEST_SIDECAR_LOG" >&2; die "$label: the sidecar exited"; }
    sleep 0.1
  done
  [ -n "$ready" ] || { tail -20 "$TEST_SIDECAR_LOG" >&2; die "$label: the sidecar was not ready within 60 s"; }
}

test_sidecar_stop() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID"
  fi
  if [ -n "$ORG" ]; then
    # The org goes with everything the tier wrote into it; if that fails the org stays behind,
    # harmless to other tests, and the log says so.
    "$IBEX_ROOT/scripts/stack.sh" psql test -Atc "SELECT ibex_ops.platform_delete_org('$ORG')" >/dev/null 2>&1 \
      || log "$TEST_SIDECAR_LABEL: org $ORG could not be deleted; it stays in the test database"
  fi
}
