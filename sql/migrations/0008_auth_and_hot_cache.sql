-- IBEX 0008: what the sidecar must do across orgs, and nothing more: authenticate an API token
-- before the org is known, and feed the Redis hot cache from the outbox of every org. The
-- functions (SECURITY DEFINER, owned by ibex_system) are in sql/api/auth.sql and
-- sql/api/hot_cache_queue.sql; here are the table privileges behind them (0004 granted
-- api_tokens, outbox and dead_letters already), granted by the tables' owner.
SET LOCAL ROLE ibex_owner;
GRANT SELECT (id, status) ON ibex_core.orgs TO ibex_system;
GRANT SELECT ON ibex_core.agent_memory_stats TO ibex_system;
RESET ROLE;
