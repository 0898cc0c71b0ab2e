#!/usr/bin/env bash
# The golden files of pg_regress/ and the isolation specs of pg_regress/isolation/ against an
# existing, migrated database: the regress tier (test.sh, the test stack) and the image tier
# (test-image.sh, the server installed in a debootstrap root) run the same suites this way.
#
#   pg-regress.sh HOST PORT DB OUT    results in OUT/regress and OUT/isolation; on a failure the
#                                     diffs are printed and the exit status is non-zero
source "$(dirname "$0")/env.sh"
[ $# -eq 4 ] || die "usage: pg-regress.sh HOST PORT DB OUT"
host=$1 port=$2 db=$3 out=$4
PGXS_DIR=$("$PG_CONFIG" --pkglibdir)/pgxs/src/test

# suite NAME PROGRAM INPUT_DIR: one suite of its schedule into OUT/NAME.
suite() {
  local name=$1 program=$2 input=$3 dir=$out/$1
  rm -rf "$dir" && mkdir -p "$dir" && chmod 777 "$dir"
  "$program" --use-existing --host="$host" --port="$port" --user=postgres --dbname="$db" \
    --inputdir="$input" --outputdir="$dir" --schedule="$input/schedule" && return 0
  [ -f "$dir/regression.diffs" ] && head -200 "$dir/regression.diffs" >&2
  die "$name failed (diffs: $dir/regression.diffs)"
}

suite regress "$PGXS_DIR/regress/pg_regress" "$IBEX_ROOT/pg_regress"
# Concurrency: isolation specs, several sessions interleaved step by step.
suite isolation "$PGXS_DIR/isolation/pg_isolation_regress" "$IBEX_ROOT/pg_regress/isolation"
