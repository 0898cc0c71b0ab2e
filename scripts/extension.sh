#!/usr/bin/env bash
# Builds ibex_pg and installs it into the system PostgreSQL 15, and runs its #[pg_test]s.
#
#   extension.sh install    release build; copies files only when they changed; restarts the
#                           project's running clusters so their preloaded library is the new one
#   extension.sh pg-test    cargo pgrx test (as the postgres user), then reinstalls the release build
#
# Files are replaced with `cp --remove-destination` (a new inode): overwriting a shared library
# in place under a running postmaster that has it mapped can crash it.
source "$(dirname "$0")/env.sh"

PKG_DIR=$CARGO_TARGET_DIR/release/ibex_pg-pg15
LIBDIR=$("$PG_CONFIG" --pkglibdir)
EXTDIR=$("$PG_CONFIG" --sharedir)/extension

running_stacks() {
  for s in dev test; do "$IBEX_ROOT/scripts/stack.sh" running "$s" 2>/dev/null && echo "$s"; done; true
}

restart_stacks() {
  for s in "$@"; do "$IBEX_ROOT/scripts/stack.sh" restart-pg "$s"; done
}

build() {
  log "building ibex_pg (release)"
  (cd "$IBEX_ROOT/ibex_pg" && cargo pgrx package --pg-config "$PG_CONFIG" >/dev/null)
}

# Copies the packaged files that differ from the installed ones; prints how many changed.
copy_changed() {
  local changed=0 src dest
  # pgrx packages the current version's script; the frozen earlier versions and the upgrade
  # scripts between them are kept in ibex_pg/sql/.
  for src in "$PKG_DIR$LIBDIR"/ibex_pg.so "$PKG_DIR$EXTDIR"/ibex_pg* "$IBEX_ROOT"/ibex_pg/sql/ibex_pg--*.sql; do
    case "$src" in *.so) dest=$LIBDIR/$(basename "$src") ;; *) dest=$EXTDIR/$(basename "$src") ;; esac
    if ! cmp -s "$src" "$dest"; then
      cp --remove-destination "$src" "$dest"
      chmod 644 "$dest"
      changed=$((changed + 1))
    fi
  done
  echo "$changed"
}

install_release() {
  build
  local changed; changed=$(copy_changed)
  if [ "$changed" -gt 0 ]; then
    log "installed ibex_pg into $LIBDIR ($changed files changed)"
    # shellcheck disable=SC2046
    restart_stacks $(running_stacks)
  else
    log "ibex_pg already installed and up to date"
  fi
}

pg_test() {
  # pgrx installs its test build with a plain copy; keep the project's clusters off meanwhile.
  local was_running; was_running=$(running_stacks)
  for s in $was_running; do "$IBEX_ROOT/scripts/stack.sh" down "$s"; done
  mkdir -p "$IBEX_DATA"
  ensure_traversable "$IBEX_DATA"
  install -d -o "$IBEX_PG_OS_USER" "$IBEX_DATA/pgrx"
  local rc=0
  (cd "$IBEX_ROOT/ibex_pg" && IBEX_VENDOR="$IBEX_VENDOR" cargo pgrx test pg15 --release \
      --runas "$IBEX_PG_OS_USER" --pgdata "$IBEX_DATA/pgrx/pgdata" "$@") || rc=$?
  build
  copy_changed >/dev/null
  for s in $was_running; do "$IBEX_ROOT/scripts/stack.sh" up "$s"; done
  return $rc
}

case "${1:-}" in
  install) install_release ;;
  pg-test) shift; pg_test "$@" ;;
  *) die "usage: extension.sh install|pg-test [TESTNAME]" ;;
esac
