-- IBEX 0006: the tables of the indexing background worker (ibex_pg, "ibex indexer"). Its SQL
-- and the ibex_ops.indexer_status view are in sql/api/indexer.sql.
SET LOCAL ROLE ibex_owner;

-- Counters the worker bumps; the view adds what is pending.
CREATE TABLE ibex_ops.worker_counters (
    worker      text NOT NULL,
    counter     text NOT NULL,
    value       bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker, counter)
);

GRANT USAGE ON SCHEMA ibex_ops TO ibex_system;
GRANT SELECT ON ibex_ops.worker_counters, ibex_ops.maintenance_log TO ibex_system;
GRANT SELECT ON ibex_core.memory_access TO ibex_system;

RESET ROLE;
