#!/usr/bin/env bash
# The test tiers (CONTRIBUTING.md). `test.sh all` runs every tier in order and prints a timing
# summary; any failure makes the script exit non-zero.
#
#   unit      cargo test of ibex_engine (pure logic, real model files) and dashboard_ssr (sessions,
#             CSRF, formatting)
#   pg        #[pg_test]s of ibex_pg in a pgrx-managed cluster
#   upgrade   a database of the previous release, migrated in place, equals a fresh one; every
#             earlier ibex_pg version, upgraded by ALTER EXTENSION UPDATE, equals a fresh install
#   regress   pg_regress golden files against a freshly migrated database on the test stack
#   image     the PostgreSQL image's install script (Dockerfile.postgres) in a clean debootstrap
#             root, then the same golden files against the server it installed (test-image.sh)
#   sidecar   sidecar tests against the migrated test database (schema/model agreement, tenancy)
#             and the test stack's Redis and Garage (S3); the fuzz corpus replayed as regression
#             tests (fuzz/tests/corpus.rs); a streaming replica (stack.sh replica-up) serves the
#             reads of read_database_url
#   api-fuzz  schemathesis against /openapi.json of a release `ibex serve` on the test stack
#             (scripts/schemathesis.sh): no 5xx, answers as documented
#   browser   the operator dashboard in Debian's Chromium through chromedriver
#             (scripts/browser-test.sh, tests/browser/dashboard.py): sign in, create an agent,
#             search and forget a memory, replay a session from S3, read a chart, at 1280 and
#             390 px; fails on any console error; screenshots in .ibex/screenshots/
#   e2e       tests/ against the running test stack (background workers, retrieval quality), and
#             the SQL fuzzer (tests/tests/sql_fuzz.rs: every ibex function, generated arguments,
#             no backend crash)
#   security  one named test per item of the security issue (item<N>_...), run as the roles a
#             deployment uses: tests/tests/security_tenancy.rs (database logins) and
#             sidecar/tests/security_surface.rs (HTTP/gRPC clients); other tiers skip them
#   faults    the fault suite (tests/tests/faults.rs): kill -9 of each component under a steady
#             mixed workload, then every acknowledged write checked (`make test-faults`)
#
# The cargo test processes get the test stack's settings (`stack.sh urls test`) in their
# environment: IBEX_DATABASE_URL, IBEX_REDIS_URL, and IBEX_S3_ENDPOINT, IBEX_S3_REGION,
# IBEX_S3_ACCESS_KEY_ID, IBEX_S3_SECRET_ACCESS_KEY for the sidecars they start. Tests that simulate
# an S3 outage use `scripts/stack.sh s3-stop test` and `s3-start test`.
source "$(dirname "$0")/env.sh"
IBEX_BIN=$CARGO_TARGET_DIR/release/ibex
SUMMARY=()

timed() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  log "── $name"
  "$@"
  SUMMARY+=("$(printf '%-28s %5ss' "$name" $(( $(date +%s) - t0 )))")
}

tier_unit() {
  cargo test -p ibex_engine -p dashboard_ssr --release
}

tier_pg() {
  "$IBEX_ROOT/scripts/extension.sh" pg-test
}

build_all() {
  cargo build --release -p ibex_sidecar --bin ibex
  "$IBEX_ROOT/scripts/extension.sh" install
}

# A database migrated from zero on the test stack; checks that a second migrate applies nothing.
fresh_database() {
  "$IBEX_ROOT/scripts/stack.sh" up test
  "$IBEX_ROOT/scripts/stack.sh" reset-db test
  eval "$("$IBEX_ROOT/scripts/stack.sh" urls test)"
  "$IBEX_BIN" migrate --database-url "$IBEX_MIGRATE_DATABASE_URL"
  local second
  second=$("$IBEX_BIN" migrate --database-url "$IBEX_MIGRATE_DATABASE_URL" 2>&1)
  grep -q "nothing to apply" <<<"$second" || die "second migrate was not a no-op: $second"
  "$IBEX_ROOT/scripts/stack.sh" set-sidecar-password test
}

# The database upgrade (migrations) and the extension upgrade (ALTER EXTENSION ibex_pg UPDATE).
tier_upgrade() {
  "$IBEX_ROOT/scripts/upgrade-check.sh"
  "$IBEX_ROOT/scripts/extension-upgrade-check.sh"
}

tier_regress() {
  eval "$("$IBEX_ROOT/scripts/stack.sh" urls test)"
  # Results in .ibex/regress/regress and .ibex/regress/isolation.
  "$IBEX_ROOT/scripts/pg-regress.sh" "$IBEX_PG_SOCKET_DIR" "$IBEX_PG_PORT_ACTIVE" "$IBEX_DB" "$IBEX_STATE/regress"
}

# The security tier's tests are named item<N>_<what>; the other tiers leave them to it.
SECURITY_TESTS=()
for n in $(seq 1 10); do SECURITY_TESTS+=(--skip "item${n}_"); done

tier_sidecar() {
  eval "$("$IBEX_ROOT/scripts/stack.sh" urls test)"
  export IBEX_MIGRATE_DATABASE_URL IBEX_DATABASE_URL IBEX_REDIS_URL \
    IBEX_S3_ENDPOINT IBEX_S3_REGION IBEX_S3_ACCESS_KEY_ID IBEX_S3_SECRET_ACCESS_KEY
  export IBEX_REPLICA_DATABASE_URL IBEX_REPLICA_MIGRATE_URL
  # A streaming replica for the tests of reads on a replica (read_database_url).
  "$IBEX_ROOT/scripts/stack.sh" replica-up test
  # ibex_fuzz: the fuzz corpus replayed through its targets (their code is the sidecar's and the
  # engine's, built here anyway).
  local rc=0
  cargo test --release -p ibex_sidecar -p ibex_fuzz -- "${SECURITY_TESTS[@]}" || rc=$?
  "$IBEX_ROOT/scripts/stack.sh" replica-down test
  return $rc
}

tier_image() {
  "$IBEX_ROOT/scripts/test-image.sh"
}

tier_api_fuzz() {
  "$IBEX_ROOT/scripts/schemathesis.sh"
}

tier_browser() {
  "$IBEX_ROOT/scripts/browser-test.sh"
}

tier_e2e() {
  eval "$("$IBEX_ROOT/scripts/stack.sh" urls test)"
  export IBEX_MIGRATE_DATABASE_URL IBEX_DATABASE_URL IBEX_REDIS_URL IBEX_PG_LOG \
    IBEX_S3_ENDPOINT IBEX_S3_REGION IBEX_S3_ACCESS_KEY_ID IBEX_S3_SECRET_ACCESS_KEY
  cargo test --release -p ibex_e2e -- "${SECURITY_TESTS[@]}" --skip fault_suite
}

# Kills and restarts the test stack's processes (stack.sh pids, pg-recover, s3-readonly, ...);
# run alone, last. The stack is left up and whole.
tier_faults() {
  eval "$("$IBEX_ROOT/scripts/stack.sh" urls test)"
  export IBEX_MIGRATE_DATABASE_URL IBEX_DATABASE_URL IBEX_REDIS_URL IBEX_PG_LOG \
    IBEX_S3_ENDPOINT IBEX_S3_REGION IBEX_S3_ACCESS_KEY_ID IBEX_S3_SECRET_ACCESS_KEY
  export IBEX_MODEL_DIR IBEX_ORT_LIB CARGO_TARGET_DIR
  local rc=0
  cargo test --release -p ibex_e2e --test faults -- --nocapture || rc=$?
  # Whatever happened, the stack is whole again for what runs next.
  "$IBEX_ROOT/scripts/stack.sh" s3-writable test
  "$IBEX_ROOT/scripts/stack.sh" up test
  return $rc
}

tier_security() {
  eval "$("$IBEX_ROOT/scripts/stack.sh" urls test)"
  export IBEX_MIGRATE_DATABASE_URL IBEX_DATABASE_URL IBEX_REDIS_URL \
    IBEX_S3_ENDPOINT IBEX_S3_REGION IBEX_S3_ACCESS_KEY_ID IBEX_S3_SECRET_ACCESS_KEY
  cargo test --release -p ibex_e2e --test security_tenancy
  cargo test --release -p ibex_sidecar --test security_surface
}

summary() {
  log "test summary:"
  printf '  %s\n' "${SUMMARY[@]}" >&2
}

case "${1:-all}" in
  unit) timed unit tier_unit ;;
  pg) timed pg_test tier_pg ;;
  upgrade) timed build build_all; "$IBEX_ROOT/scripts/stack.sh" up test; timed upgrade tier_upgrade ;;
  regress) timed build build_all; timed fresh-database fresh_database; timed regress tier_regress ;;
  sidecar) timed build build_all; timed fresh-database fresh_database; timed sidecar tier_sidecar ;;
  # Its own fresh org on the test stack as it is: no database reset.
  api-fuzz) timed build build_all; timed api-fuzz tier_api_fuzz ;;
  browser) timed build build_all; timed browser tier_browser ;;
  e2e) timed build build_all; timed fresh-database fresh_database; timed e2e tier_e2e ;;
  security) timed build build_all; timed fresh-database fresh_database; timed security tier_security ;;
  image) timed build build_all; timed image tier_image ;;
  faults) timed build build_all; timed fresh-database fresh_database; timed faults tier_faults ;;
  all)
    T0=$(date +%s)
    timed unit tier_unit
    timed pg_test tier_pg
    timed build build_all
    timed fresh-database fresh_database
    timed upgrade tier_upgrade
    timed regress tier_regress
    timed image tier_image
    timed sidecar tier_sidecar
    timed api-fuzz tier_api_fuzz
    timed browser tier_browser
    timed e2e tier_e2e
    timed security tier_security
    timed faults tier_faults
    summary
    log "all tests passed in $(( $(date +%s) - T0 ))s" ;;
  *) die "usage: test.sh all|unit|pg|upgrade|regress|sidecar|api-fuzz|browser|e2e|security|faults|image" ;;
esac
