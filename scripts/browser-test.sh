#!/usr/bin/env bash
# The `browser` tier: the operator dashboard in Debian's Chromium, driven through chromedriver
# by tests/browser/dashboard.py (Selenium, pinned here, installed once into a venv under the
# cache), against a release `ibex serve` on the test stack with a fresh org
# (scripts/test-sidecar.sh). Screenshots of every page go to .ibex/screenshots/.
#
#   browser-test.sh            install (once, cached) and run
#   browser-test.sh install    only install Chromium, chromedriver and Selenium
source "$(dirname "$0")/env.sh"
SELENIUM_VERSION=4.27.1
VENV=$IBEX_CACHE/selenium-$SELENIUM_VERSION
SCREENSHOTS=$IBEX_STATE/screenshots

install() {
  local missing=()
  for p in chromium chromium-driver fonts-liberation; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "browser: installing ${missing[*]} (Debian)"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import selenium, sys; sys.exit(selenium.__version__ != '$SELENIUM_VERSION')" 2>/dev/null; then
    return 0
  fi
  log "browser: installing selenium $SELENIUM_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --cache-dir "$IBEX_CACHE/pip" "selenium==$SELENIUM_VERSION"
}

install
[ "${1:-}" = install ] && exit 0
source "$IBEX_ROOT/scripts/test-sidecar.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ibex-browser.XXXXXX")
cleanup() { test_sidecar_stop; rm -rf "$WORK"; }
trap cleanup EXIT
# Archives written within a second of completion; the replay reads them back.
test_sidecar_start browser "$WORK" IBEX_ARCHIVE_POLL_MS=200

rm -rf "$SCREENSHOTS" && mkdir -p "$SCREENSHOTS"
log "browser: $(chromium --version 2>/dev/null) against http://$HTTP_ADDR (org $ORG)"
rc=0
# Selenium Manager stays off: the driver is Debian's, named by path (no download).
SE_OFFLINE=true IBEX_HTTP="http://$HTTP_ADDR" IBEX_TOKEN="$TOKEN" IBEX_ORG="$ORG" \
  IBEX_STACK="$IBEX_ROOT/scripts/stack.sh" IBEX_SCREENSHOTS="$SCREENSHOTS" \
  "$VENV/bin/python" "$IBEX_ROOT/tests/browser/dashboard.py" || rc=$?
if [ "$rc" -ne 0 ]; then
  log "browser: sidecar log (last 40 lines):"
  tail -40 "$TEST_SIDECAR_LOG" >&2
  die "browser: the dashboard failed in Chromium (screenshots: $SCREENSHOTS)"
fi
