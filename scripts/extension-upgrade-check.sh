#!/usr/bin/env bash
# Extension upgrade test: every earlier version of ibex_pg kept in ibex_pg/sql/ (the frozen
# install script of each release, ibex_pg--<version>.sql) is installed into a database of its
# own, upgraded with `ALTER EXTENSION ibex_pg UPDATE` through the upgrade scripts
# (ibex_pg--<from>--<to>.sql), and compared with a fresh install of the current version: the
# same version, and the same member objects with the same definitions, properties and grants.
# A change to the extension's SQL without a version bump and an upgrade script fails here.
source "$(dirname "$0")/env.sh"
eval "$("$IBEX_ROOT/scripts/stack.sh" urls test)"
psql_db() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$IBEX_PG_SOCKET_DIR" -p "$IBEX_PG_PORT_ACTIVE" -U postgres -d "$1" "${@:2}"; }
out=$IBEX_STATE/extension-upgrade
mkdir -p "$out"

# Each member of the extension: what it is, and for functions their full definition, their
# volatility, parallel safety, cost and grants (pg_get_functiondef has the rest).
MEMBERS_SQL="
SELECT pg_describe_object(d.classid, d.objid, 0)
       || coalesce(E'\n' || (SELECT pg_get_functiondef(p.oid) || format(E'-- volatile %s parallel %s cost %s acl %s\n',
                                    p.provolatile, p.proparallel, p.procost, coalesce(p.proacl::text, 'default'))
                             FROM pg_proc p WHERE d.classid = 'pg_proc'::regclass AND p.oid = d.objid AND p.prokind <> 'a'), '')
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ibex_pg')
 ORDER BY 1"

members() {
  psql_db "$1" -At -c "SELECT extversion FROM pg_extension WHERE extname = 'ibex_pg'" -c "$MEMBERS_SQL"
}

fresh=ibex_ext_fresh
psql_db postgres -c "DROP DATABASE IF EXISTS $fresh WITH (FORCE)" -c "CREATE DATABASE $fresh"
psql_db "$fresh" -c "CREATE EXTENSION vector" -c "CREATE EXTENSION ibex_pg"
members "$fresh" > "$out/fresh.txt"
current=$(head -1 "$out/fresh.txt")
functions=$(grep -c '^function ' "$out/fresh.txt" || true)

checked=0
for script in "$IBEX_ROOT"/ibex_pg/sql/ibex_pg--*.sql; do
  name=$(basename "$script" .sql)
  version=${name#ibex_pg--}
  case "$version" in *--*) continue ;; esac # an upgrade script, not a version
  [ "$version" = "$current" ] && continue
  db=ibex_ext_from_${version//./_}
  psql_db postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  psql_db "$db" -c "CREATE EXTENSION vector" -c "CREATE EXTENSION ibex_pg VERSION '$version'" \
    -c "ALTER EXTENSION ibex_pg UPDATE"
  members "$db" > "$out/from-$version.txt"
  if ! diff -u "$out/fresh.txt" "$out/from-$version.txt" > "$out/from-$version.diff"; then
    head -60 "$out/from-$version.diff" >&2
    die "extension upgrade: $version upgraded to $current differs from a fresh $current (full diff: $out/from-$version.diff). A change to ibex_pg's SQL needs a new version in ibex_pg/Cargo.toml and an upgrade script (CONTRIBUTING.md)"
  fi
  psql_db postgres -c "DROP DATABASE $db"
  log "extension upgrade: ibex_pg $version -> $current by ALTER EXTENSION UPDATE equals a fresh $current ($functions functions)"
  checked=$((checked + 1))
done
psql_db postgres -c "DROP DATABASE $fresh"
[ "$checked" -gt 0 ] || die "extension upgrade: no earlier version in ibex_pg/sql/ to upgrade from"
