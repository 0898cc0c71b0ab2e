#!/usr/bin/env bash
# `make bench-memory`: see bench/src/bin/bench_memory.rs. Runs against the dev cluster, in three
# databases of its own (ibex_bench_10k, ibex_bench_100k, ibex_bench_quality) that keep their
# seeded data between runs; newer migrations are applied forward, and a database is recreated
# when that fails (an applied migration changed) or the corpus changes. The conversational part
# runs in the dev database itself (the one its extraction workers serve), in an org of its own.
source "$(dirname "$0")/env.sh"
"$IBEX_ROOT/scripts/stack.sh" up dev
cargo build --release -p ibex_bench --bin bench_memory
source "$IBEX_ROOT/scripts/bench-db.sh"
eval "$("$IBEX_ROOT/scripts/stack.sh" urls dev)"
"$CARGO_TARGET_DIR/release/ibex" migrate --database-url "$IBEX_MIGRATE_DATABASE_URL" >/dev/null
for db in ibex_bench_10k ibex_bench_100k ibex_bench_quality; do bench_db_current "$db"; done

IBEX_BENCH_URL_10K=$(bench_db_url ibex_bench_10k) IBEX_BENCH_URL_100K=$(bench_db_url ibex_bench_100k) \
IBEX_BENCH_URL_QUALITY=$(bench_db_url ibex_bench_quality) \
IBEX_BENCH_URL_LEARNING="postgres://postgres@localhost/ibex?host=$IBEX_DATA/dev/run&port=$IBEX_PG_PORT" \
  "$CARGO_TARGET_DIR/release/bench_memory"
