#!/usr/bin/env bash
# Installs PostgreSQL 15 with pgvector and ibex_pg (preloaded), the model files and the start
# script into a Debian bookworm system, as root. The one install path of the PostgreSQL image:
# Dockerfile.postgres runs it in debian:bookworm-slim, and `make test-image` (scripts/test-image.sh)
# runs it in a clean debootstrap root, then the regress suite against the result.
#
#   image-install.sh [CONTEXT]   CONTEXT (default: this script's directory) is the build context
#                                made by `scripts/test-image.sh context`: pre-built files, so no
#                                Rust toolchain or compiler is needed here
#
# Standalone (no env.sh): it runs where the repository is not.
set -euo pipefail

CTX=${1:-$(cd "$(dirname "$0")" && pwd)}
PG_MAJOR=15
PKGLIBDIR=/usr/lib/postgresql/$PG_MAJOR/lib
EXTDIR=/usr/share/postgresql/$PG_MAJOR/extension
# Where the image keeps IBEX's own files; image-entrypoint.sh reads them from here.
IBEX_PREFIX=/usr/local/lib/ibex
MODEL_DIR=/usr/local/share/ibex/model

log() { printf '[image-install] %s\n' "$*" >&2; }
die() { printf '[image-install] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
for f in ext/lib/ibex_pg.so ext/lib/vector.so ext/extension/ibex_pg.control ext/extension/vector.control \
         model/model.onnx model/tokenizer.json onnxruntime/libonnxruntime.so.1.32.0 pg-conf.sh image-entrypoint.sh; do
  [ -f "$CTX/$f" ] || die "$CTX/$f is missing (make the context with scripts/test-image.sh context)"
done

# Packages install without starting services (no init here; under a chroot a started server
# would run on the host) and without the "main" cluster: the entrypoint makes its own in $PGDATA.
cat > /usr/sbin/policy-rc.d <<'SH'
#!/bin/sh
exit 101
SH
chmod 755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT

export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -q --no-install-recommends "$@"; }
log "apt-get update"
apt-get update -q
log "installing postgresql-$PG_MAJOR"
apt_install postgresql-common
sed -ri 's/^#? *create_main_cluster *=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
grep -q '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf ||
  echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
# libstdc++6: ONNX Runtime's C++ runtime (postgresql pulls it in today, through LLVM).
apt_install "postgresql-$PG_MAJOR" libstdc++6

log "installing pgvector and ibex_pg into $PKGLIBDIR and $EXTDIR"
install -m 755 "$CTX"/ext/lib/*.so "$PKGLIBDIR/"
install -m 644 "$CTX"/ext/extension/* "$EXTDIR/"

log "installing ONNX Runtime and the model files"
install -d -m 755 "$IBEX_PREFIX" "$MODEL_DIR"
install -m 644 "$CTX/onnxruntime/libonnxruntime.so.1.32.0" "$IBEX_PREFIX/"
install -m 644 "$CTX/model/model.onnx" "$CTX/model/tokenizer.json" "$MODEL_DIR/"
install -m 755 "$CTX/pg-conf.sh" "$IBEX_PREFIX/pg-conf.sh"
install -m 755 "$CTX/image-entrypoint.sh" /usr/local/bin/ibex-postgres
# The socket directory and $PGDATA's parent, for a container started with --user postgres too.
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
install -d -o postgres -g postgres -m 755 /var/lib/postgresql

# A library the host linked against that this system lacks would only show when PostgreSQL
# starts; say it now.
missing=$(ldd "$PKGLIBDIR/ibex_pg.so" "$PKGLIBDIR/vector.so" "$IBEX_PREFIX/libonnxruntime.so.1.32.0" | grep 'not found' || true)
[ -z "$missing" ] || die "unresolved libraries: $missing"
log "installed: $(/usr/lib/postgresql/$PG_MAJOR/bin/postgres --version), ibex_pg $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$EXTDIR/ibex_pg.control"), pgvector $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$EXTDIR/vector.control")"
