#!/usr/bin/env bash
# The `api-fuzz` tier: schemathesis (property-based tests generated from /openapi.json) against
# a release `ibex serve` on free loopback ports, over the TEST stack (its Postgres, Redis and
# Garage S3, settings from `stack.sh urls test`). The caller is an admin token
# of a fresh org (every org-scoped route is exercised; /v1/orgs answers 403: a platform:admin
# token could suspend or delete the orgs of tests running beside this one). Any finding (a 5xx,
# an answer outside the document's statuses, schemas or content types) fails the tier.
#
#   schemathesis.sh            install (once, cached) and run
#   schemathesis.sh install    only install schemathesis into its cached venv
#
# IBEX_FUZZ_EXAMPLES bounds the examples per operation (default 50: about a minute of requests,
# 2 to 3 minutes with the sidecar's start on 2 cores).
source "$(dirname "$0")/env.sh"
SCHEMATHESIS_VERSION=4.32.5
VENV=$IBEX_CACHE/schemathesis-$SCHEMATHESIS_VERSION
EXAMPLES=${IBEX_FUZZ_EXAMPLES:-50}

install() {
  if [ -x "$VENV/bin/schemathesis" ] && "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    return 0
  fi
  log "api-fuzz: installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --cache-dir "$IBEX_CACHE/pip" "schemathesis==$SCHEMATHESIS_VERSION"
}

install
[ "${1:-}" = install ] && exit 0
source "$IBEX_ROOT/scripts/test-sidecar.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ibex-fuzz.XXXXXX")
cleanup() { test_sidecar_stop; rm -rf "$WORK"; }
trap cleanup EXIT
test_sidecar_start fuzz "$WORK"

log "api-fuzz: schemathesis $SCHEMATHESIS_VERSION against http://$HTTP_ADDR (org $ORG, $EXAMPLES examples per operation)"
rc=0
# No phone-home, no report files in the checkout; the seed is printed, so a run can be repeated
# with --seed. One worker: with two, CPython 3.11's compile() (hypothesis describing its
# strategies) intermittently fails with "AST constructor recursion depth mismatch".
SCHEMATHESIS_TELEMETRY=false "$VENV/bin/schemathesis" run "http://$HTTP_ADDR/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "$EXAMPLES" \
  --workers 1 \
  --request-timeout 30 \
  --suppress-health-check too_slow,filter_too_much \
  --report-dir "$WORK/report" \
  ${IBEX_FUZZ_ARGS:-} || rc=$?
if [ "$rc" -ne 0 ]; then
  log "api-fuzz: sidecar log (last 40 lines):"
  tail -40 "$TEST_SIDECAR_LOG" >&2
  die "api-fuzz: schemathesis found problems (exit $rc)"
fi
log "api-fuzz: no findings"
