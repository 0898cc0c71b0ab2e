-- IBEX 0018: deleting an org with memories (ibex_ops.platform_delete_org, run as ibex_system).
-- The statement triggers on memories keep the per-agent statistics of relevance
-- (sql/api/lexical_stats.sql); they run after the deletion's cascade, as the caller, so the
-- platform functions' owner writes those tables too (its rows of the deleted org only: the
-- statistics rows go with the org's agents).
SET LOCAL ROLE ibex_owner;
GRANT SELECT, INSERT, UPDATE ON ibex_core.agent_memory_stats, ibex_core.lexeme_stats TO ibex_system;
RESET ROLE;
