# Shared settings for the project's scripts. Sourced, never executed.
# Everything expensive lives in a stable per-user cache (CI clones are new each time); everything
# per-checkout (clusters, vendored model files) lives in the git-ignored .ibex/ directory.
set -euo pipefail

IBEX_ROOT=${IBEX_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
IBEX_CACHE=${IBEX_CACHE:-$HOME/.cache/ibex}
IBEX_STATE=${IBEX_STATE:-$IBEX_ROOT/.ibex}
IBEX_VENDOR=${IBEX_VENDOR:-$IBEX_STATE/vendor}
IBEX_DATA=${IBEX_DATA:-$IBEX_STATE/data}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$IBEX_CACHE/target}

PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
PG_BIN=$("$PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)

# Ports: away from the defaults so a machine's own services never collide with ours.
IBEX_PG_PORT=${IBEX_PG_PORT:-54329}
IBEX_REDIS_PORT=${IBEX_REDIS_PORT:-63790}
IBEX_HTTP_PORT=${IBEX_HTTP_PORT:-8780}
IBEX_GRPC_PORT=${IBEX_GRPC_PORT:-8781}
# The test stack runs beside the dev stack, never on top of it.
IBEX_TEST_PG_PORT=${IBEX_TEST_PG_PORT:-54339}
IBEX_TEST_REDIS_PORT=${IBEX_TEST_REDIS_PORT:-63791}
# Garage (the S3 server of each stack): the S3 API on IBEX_S3_PORT / IBEX_TEST_S3_PORT, its RPC
# and admin APIs beside it (+1 and +3, as Garage's own defaults 3900, 3901 and 3903 are).
IBEX_S3_PORT=${IBEX_S3_PORT:-39000}
IBEX_S3_RPC_PORT=${IBEX_S3_RPC_PORT:-$((IBEX_S3_PORT + 1))}
IBEX_S3_ADMIN_PORT=${IBEX_S3_ADMIN_PORT:-$((IBEX_S3_PORT + 3))}
IBEX_TEST_S3_PORT=${IBEX_TEST_S3_PORT:-39010}
IBEX_TEST_S3_RPC_PORT=${IBEX_TEST_S3_RPC_PORT:-$((IBEX_TEST_S3_PORT + 1))}
IBEX_TEST_S3_ADMIN_PORT=${IBEX_TEST_S3_ADMIN_PORT:-$((IBEX_TEST_S3_PORT + 3))}
# Memory bound of the stacks' Redis servers (maxmemory; evicting with allkeys-lru, see stack.sh).
IBEX_REDIS_MAXMEMORY=${IBEX_REDIS_MAXMEMORY:-256mb}

# PostgreSQL refuses to run as root; the clusters run as this OS user.
IBEX_PG_OS_USER=${IBEX_PG_OS_USER:-postgres}

# Garage, built once per machine into the stable cache by setup.sh (install_garage).
GARAGE_VERSION=2.5.0
IBEX_GARAGE_DIR=$IBEX_CACHE/garage-$GARAGE_VERSION
IBEX_GARAGE_BIN=$IBEX_GARAGE_DIR/bin/garage

IBEX_MODEL_DIR=$IBEX_VENDOR/model
IBEX_ORT_LIB=$IBEX_VENDOR/onnxruntime/libonnxruntime.so.1.32.0

log() { printf '\033[1;34m[ibex]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[ibex] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Run a command as the PostgreSQL OS user (we are usually root on these machines).
as_pg() {
  if [ "$(id -un)" = "$IBEX_PG_OS_USER" ]; then "$@"; else
    sudo -u "$IBEX_PG_OS_USER" -- "$@"
  fi
}

# The PostgreSQL user must be able to reach files under the checkout (data dir, model files).
# Checkouts under /root are not traversable by other users; grant traversal (x, not read) on
# each ancestor that lacks it, and say so.
ensure_traversable() {
  local dir=$1
  while [ "$dir" != "/" ]; do
    if [ "$(id -un)" = root ] && ! sudo -u "$IBEX_PG_OS_USER" test -x "$dir" 2>/dev/null; then
      log "granting o+x on $dir so the $IBEX_PG_OS_USER user can reach the project"
      chmod o+x "$dir"
    fi
    dir=$(dirname "$dir")
  done
}
