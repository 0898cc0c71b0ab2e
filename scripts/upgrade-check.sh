#!/usr/bin/env bash
# Upgrade test: a database built by the previous release of main, migrated in place by this
# build's `ibex migrate`, must have the same catalog as a database this build migrates from zero.
#
# The previous release's migrations are read from git (UPGRADE_FROM) and applied the way its
# sqlx migrator did: each file in one transaction, recorded in _sqlx_migrations with its SHA-384.
# Both databases live on the test stack; the comparison is pg_dump --schema-only (tables,
# functions and their bodies, owners, grants, policies, triggers, views, indexes).
source "$(dirname "$0")/env.sh"
UPGRADE_FROM=${UPGRADE_FROM:-7d217e0}
IBEX_BIN=${IBEX_BIN:-$CARGO_TARGET_DIR/release/ibex}
OLD_DB=ibex_upgrade_old
NEW_DB=ibex_upgrade_fresh

git -C "$IBEX_ROOT" cat-file -e "$UPGRADE_FROM^{commit}" 2>/dev/null ||
  die "upgrade check: commit $UPGRADE_FROM (the previous release) is not in this clone; fetch the full history (git fetch --unshallow)"

eval "$("$IBEX_ROOT/scripts/stack.sh" urls test)"
psql_db() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$IBEX_PG_SOCKET_DIR" -p "$IBEX_PG_PORT_ACTIVE" -U postgres -d "$1" "${@:2}"; }
url_for() { echo "postgres://postgres@localhost/$1?host=$IBEX_PG_SOCKET_DIR&port=$IBEX_PG_PORT_ACTIVE"; }

for db in "$OLD_DB" "$NEW_DB"; do
  psql_db postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done

log "upgrade check: building $OLD_DB with the migrations of $UPGRADE_FROM"
psql_db "$OLD_DB" -c "CREATE TABLE public._sqlx_migrations (
    version bigint PRIMARY KEY, description text NOT NULL, installed_on timestamptz NOT NULL DEFAULT now(),
    success boolean NOT NULL, checksum bytea NOT NULL, execution_time bigint NOT NULL)"
while read -r path; do
  name=$(basename "$path" .sql)
  version=$((10#${name%%_*}))
  description=${name#*_}; description=${description//_/ }
  git -C "$IBEX_ROOT" show "$UPGRADE_FROM:$path" | psql_db "$OLD_DB" --single-transaction -f - >/dev/null
  checksum=$(git -C "$IBEX_ROOT" show "$UPGRADE_FROM:$path" | sha384sum | cut -d' ' -f1)
  psql_db "$OLD_DB" -v v="$version" -v d="$description" -v c="$checksum" <<'SQL'
INSERT INTO public._sqlx_migrations (version, description, success, checksum, execution_time)
VALUES (:v, :'d', true, decode(:'c', 'hex'), 0);
SQL
done < <(git -C "$IBEX_ROOT" ls-tree --name-only "$UPGRADE_FROM" sql/migrations/ | grep '\.sql$' | sort)

log "upgrade check: migrating $OLD_DB in place and $NEW_DB from zero"
"$IBEX_BIN" migrate --database-url "$(url_for "$OLD_DB")"
"$IBEX_BIN" migrate --database-url "$(url_for "$NEW_DB")"

dump() { "$PG_BIN/pg_dump" --schema-only -h "$IBEX_PG_SOCKET_DIR" -p "$IBEX_PG_PORT_ACTIVE" -U postgres "$1" | grep -v -e '^-- Dumped' -e '^\\restrict' -e '^\\unrestrict'; }
out=$IBEX_STATE/upgrade
mkdir -p "$out"
dump "$OLD_DB" > "$out/upgraded.sql"
dump "$NEW_DB" > "$out/fresh.sql"
if ! diff -u "$out/fresh.sql" "$out/upgraded.sql" > "$out/catalog.diff"; then
  head -100 "$out/catalog.diff" >&2
  die "upgrade check: the upgraded catalog differs from a fresh one (full diff: $out/catalog.diff)"
fi
functions=$(grep -c '^CREATE FUNCTION' "$out/fresh.sql" || true)
policies=$(grep -c '^CREATE POLICY' "$out/fresh.sql" || true)
grants=$(grep -c '^GRANT' "$out/fresh.sql" || true)
log "upgrade check: catalogs identical ($functions functions, $policies policies, $grants grants)"
# A changed sql/api file is applied again, and only that one: pretend search.sql changed since
# it was applied (its recorded hash no longer matches) and migrate once more.
psql_db "$NEW_DB" -c "UPDATE ibex_ops.sql_api_files SET sha256 = repeat('0', 64) WHERE file = 'search.sql'"
status=$("$IBEX_BIN" migrate --status --database-url "$(url_for "$NEW_DB")")
grep -q '^api  changed  search.sql$' <<<"$status" ||
  die "upgrade check: ibex migrate --status does not report search.sql as changed"
again=$("$IBEX_BIN" migrate --log-format json --database-url "$(url_for "$NEW_DB")" 2>&1)
reapplied=$(grep -o '"file":"[a-z_]*\.sql"' <<<"$again" | sort -u | tr '\n' ' ')
[ "$reapplied" = '"file":"search.sql" ' ] ||
  die "upgrade check: expected only search.sql to be applied again, got: ${reapplied:-nothing}"
log "upgrade check: a changed sql/api file is applied again, alone"
for db in "$OLD_DB" "$NEW_DB"; do psql_db postgres -c "DROP DATABASE $db WITH (FORCE)"; done
