#!/usr/bin/env bash
# `make bench-dashboard` (bench/browser/dashboard_bench.py): every dashboard page in headless
# Chromium over a seeded org (100 agents, 100,000 memories, 10,000 sessions, 1,000,000 usage
# events; bench/sql/dashboard_seed.sql), LCP and server time per page against the API calls the
# pages are built on. Uses a database of its own on the dev cluster (ibex_bench_dashboard, seeded
# once and kept) and a bucket of its own; starts `ibex serve` on IBEX_BENCH_HTTP_PORT /
# IBEX_BENCH_GRPC_PORT (8790 / 8791) and stops it after.
source "$(dirname "$0")/env.sh"
IBEX_BIN=$CARGO_TARGET_DIR/release/ibex
DB=ibex_bench_dashboard
BUCKET=ibex-bench-dashboard
SLUG=bench-dashboard
LOG=$IBEX_STATE/bench-dashboard.log

"$IBEX_ROOT/scripts/stack.sh" up dev
"$IBEX_ROOT/scripts/browser-test.sh" install
[ -x "$IBEX_BIN" ] || die "no $IBEX_BIN: make bench-dashboard builds it"
source "$IBEX_ROOT/scripts/bench-db.sh"
bench_db_current "$DB"
sql() { psql_admin -d "$DB" "$@"; }

ORG=$(sql -c "SELECT id FROM ibex_core.orgs WHERE slug = '$SLUG'")
if [ -z "$ORG" ] || [ "$(sql -c "SELECT count(*) FROM ibex_core.usage_events WHERE org_id = '$ORG'")" != 1000000 ]; then
  [ -n "$ORG" ] && sql -c "SELECT ibex_ops.platform_delete_org('$ORG')" >/dev/null
  ORG=$(sql -c "SELECT id FROM ibex_ops.platform_create_org('Dashboard benchmark', '$SLUG', '{}')")
  log "bench-dashboard: seeding org $ORG (a few minutes, once per database)"
  t0=$(date +%s)
  sql -v org="$ORG" -f "$IBEX_ROOT/bench/sql/dashboard_seed.sql"
  log "bench-dashboard: seeded in $(( $(date +%s) - t0 ))s"
fi
AGENT=$(sql -c "SELECT id FROM ibex_core.agents WHERE org_id = '$ORG' AND name = 'Agent 1'")
SESSION=$(sql -c "SELECT id FROM ibex_core.sessions WHERE org_id = '$ORG' AND external_id = 'conv-1'")
MEMORY=$(sql -c "SELECT id FROM ibex_core.memories WHERE org_id = '$ORG' ORDER BY created_at DESC LIMIT 1")
TOKEN=$("$IBEX_BIN" token create --database-url "$(bench_db_url "$DB")" --org "$ORG" --name bench-dashboard \
  --scopes admin --expires-in-days 1 2>/dev/null)

bench_sidecar_start "$DB" "$LOG" IBEX_S3_BUCKET="$BUCKET" IBEX_ARCHIVE_POLL_MS=200

# The replay page reads an archive from S3: one session written the way the proxy writes
# sessions, completed, archived by the sidecar.
REPLAY=$(sql -c "SELECT id FROM ibex_core.sessions WHERE org_id = '$ORG' AND external_id = 'replay' AND archived_at IS NOT NULL")
if [ -z "$REPLAY" ]; then
  REPLAY=$(sql -c "SELECT set_config('ibex.org_id', '$ORG', false) IS NULL" \
    -c "WITH s AS (SELECT ibex_core.ensure_session('$ORG', '$AGENT', 'replay') AS id)
        SELECT s.id FROM s, LATERAL ibex_core.append_turns('$ORG', s.id, (SELECT jsonb_agg(jsonb_build_object(
          'role', CASE WHEN t % 2 = 1 THEN 'user' ELSE 'assistant' END, 'content', repeat('a turn of the replayed conversation ', 20),
          'tokens', 120, 'model', 'gpt-4o-mini')) FROM generate_series(1, 40) t)) n" | tail -1)
  curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "http://$HTTP_ADDR/v1/sessions/$REPLAY/complete" >/dev/null
  for _ in $(seq 300); do
    [ -n "$(sql -c "SELECT 1 FROM ibex_core.sessions WHERE org_id = '$ORG' AND id = '$REPLAY' AND archived_at IS NOT NULL")" ] && break
    sleep 0.2
  done
fi

IBEX_HTTP="http://$HTTP_ADDR" IBEX_TOKEN="$TOKEN" IBEX_AGENT="$AGENT" IBEX_SESSION="$SESSION" IBEX_MEMORY="$MEMORY" \
IBEX_REPLAY_SESSION="$REPLAY" SE_OFFLINE=true \
  "$IBEX_CACHE/selenium-4.27.1/bin/python" "$IBEX_ROOT/bench/browser/dashboard_bench.py"
