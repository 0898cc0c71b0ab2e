-- IBEX 0010: functions, trigger functions, triggers and views now live in sql/api/, one file per
-- function family, written as CREATE OR REPLACE. `ibex migrate` applies them after the
-- migrations and records each file's SHA-256 here, so an unchanged file is skipped and a changed
-- one is applied again. Operational state: not tenant data, not visible to applications.
SET LOCAL ROLE ibex_owner;

CREATE TABLE ibex_ops.sql_api_files (
    file        text PRIMARY KEY CHECK (file ~ '^[a-z0-9_]+\.sql$'),
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    applied_at  timestamptz NOT NULL DEFAULT now()
);

RESET ROLE;
