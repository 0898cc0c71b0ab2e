-- IBEX 0009: recording an access must not make a search pay for a durable commit, and a search
-- that records nothing must be able to run read-only.
--
-- search() appends one memory_access row per result. Two things made that cost a WAL flush
-- (fsync) at every search's commit, about 0.7 ms, a sixth of a search:
--
-- * the foreign key to orgs: its check takes FOR KEY SHARE on the org's row, and a row lock is
--   WAL-logged (and every concurrent search of the org locks the same row, building MultiXacts);
-- * the table being logged: any WAL record makes the commit wait for the flush.
--
-- Access rows are statistics on their way into access_count and last_accessed_at (the indexer
-- folds them within seconds). Losing the ones not yet folded in a crash (an unlogged table is
-- emptied by crash recovery) costs a few counts; it never loses a memory. So the table is
-- UNLOGGED and has no foreign key: the indexer's fold deletes rows whatever they point at, so a
-- deleted org's leftovers go with the next fold. Org isolation is unchanged (RLS, forced).
SET LOCAL ROLE ibex_owner;

ALTER TABLE ibex_core.memory_access DROP CONSTRAINT memory_access_org_id_fkey;
ALTER TABLE ibex_core.memory_access SET UNLOGGED;

COMMENT ON TABLE ibex_core.memory_access IS
    'Access log appended by search(); folded into memories by the indexer. UNLOGGED and without '
    'a foreign key on purpose (migration 0009): a search must not wait for a WAL flush.';


RESET ROLE;
