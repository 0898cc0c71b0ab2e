#!/usr/bin/env bash
# `make fuzz`: runs every libFuzzer target of fuzz/libfuzzer for a bounded time, then merges what
# it found into fuzz/corpus/<target>/ (minimised: only inputs that add coverage are kept), where
# `make test` replays them (fuzz/tests/corpus.rs). A crash stops the run with the input saved in
# fuzz/libfuzzer/artifacts/<target>/; once fixed, copy it into the corpus as regression-<what>.
#
#   FUZZ_SECONDS   per target (default 60)
#   FUZZ_TARGETS   space-separated subset (default: all)
#   FUZZ_JOBS      parallel fuzzing processes per target (default 1)
#
# cargo-fuzz is installed once into ~/.cache/ibex/tools. libFuzzer's instrumentation needs
# unstable rustc flags; RUSTC_BOOTSTRAP lets the pinned stable toolchain accept them, so no
# nightly download is needed.
source "$(dirname "$0")/env.sh"
TOOLS=$IBEX_CACHE/tools
CARGO_FUZZ=$TOOLS/bin/cargo-fuzz
FUZZ_DIR=$IBEX_ROOT/fuzz/libfuzzer
CORPUS=$IBEX_ROOT/fuzz/corpus
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-1}
ALL_TARGETS=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$FUZZ_DIR/Cargo.toml" | grep -v '^ibex_fuzz_libfuzzer$')
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}

if [ ! -x "$CARGO_FUZZ" ]; then
  log "fuzz: installing cargo-fuzz into $TOOLS (once)"
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$TOOLS"
fi

export RUSTC_BOOTSTRAP=1
# Its own target dir: the instrumented build must not evict the normal one.
export CARGO_TARGET_DIR=$IBEX_CACHE/fuzz-target
fuzz() { "$CARGO_FUZZ" fuzz "$1" --fuzz-dir "$FUZZ_DIR" "${@:2}"; }

log "fuzz: building the targets (address sanitizer, release)"
fuzz build --release

summary=()
parallel=()
[ "$JOBS" -gt 1 ] && parallel=(-fork="$JOBS")
for target in $TARGETS; do
  before=$(find "$CORPUS/$target" -type f | wc -l)
  work=$IBEX_STATE/fuzz/$target
  rm -rf "$work" && mkdir -p "$work"
  log "fuzz: $target for ${SECONDS_PER_TARGET}s ($before corpus inputs)"
  # New inputs go to the scratch directory first; the seeds and earlier finds are read too.
  if ! fuzz run --release "$target" "$work" "$CORPUS/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" "${parallel[@]}" -print_final_stats=1 \
    >"$work.log" 2>&1; then
    tail -40 "$work.log" >&2
    die "fuzz: $target crashed (input saved in $FUZZ_DIR/artifacts/$target/, full log $work.log)"
  fi
  grep -E '^#[0-9]+ +DONE|^stat::number_of_executed_units' "$work.log" | sed 's/^/    /' >&2 || true
  # Keep only what adds coverage: merge scratch and corpus into a fresh minimal set.
  merged=$IBEX_STATE/fuzz/$target.merged
  rm -rf "$merged" && mkdir -p "$merged"
  fuzz run --release "$target" "$merged" "$CORPUS/$target" "$work" -- -merge=1 >"$merged.log" 2>&1 ||
    { tail -20 "$merged.log" >&2; die "fuzz: merging the $target corpus failed"; }
  # Seeds and named regressions (inputs that once broke a target) stay by name; the finds keep
  # libFuzzer's names (the SHA-1 of their content), so a merged copy of a named one is skipped.
  seeds=$(find "$CORPUS/$target" -type f \( -name 'seed-*' -o -name 'regression-*' \) -exec sha1sum {} + | cut -d' ' -f1)
  find "$CORPUS/$target" -type f ! -name 'seed-*' ! -name 'regression-*' -delete
  for f in "$merged"/*; do
    [ -e "$f" ] || continue
    grep -qx "$(basename "$f")" <<<"$seeds" || cp "$f" "$CORPUS/$target/"
  done
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work.log" | awk '{s+=$1} END {print s+0}')
  after=$(find "$CORPUS/$target" -type f | wc -l)
  summary+=("$(printf '%-24s %5ss  %10s runs  corpus %4d -> %4d  no crash' "$target" "$SECONDS_PER_TARGET" "$executions" "$before" "$after")")
done
log "fuzz summary:"
printf '  %s\n' "${summary[@]}" >&2
