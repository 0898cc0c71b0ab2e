-- IBEX 0001: roles, extensions and the ibex_core schema.
--
-- Runs as a superuser (the migration runner's connection): creating roles and extensions needs
-- it. Every later migration switches to ibex_owner so that the objects it creates belong to the
-- owner role, not to whoever ran the migration.
--
-- Roles (cluster-wide, so created only when missing):
--   ibex_owner  NOLOGIN: owns the schema and every table. Tables FORCE row-level security, so
--               even the owner sees only the org in ibex.org_id.
--   ibex_app    LOGIN, no BYPASSRLS: what the sidecar and applications connect as. Its password
--               is set outside migrations (make run generates one; production uses its secrets).
--   ibex_system NOLOGIN BYPASSRLS: owns the few SECURITY DEFINER functions that must work across
--               orgs (token authentication, outbox consumers). Nobody logs in as it.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ibex_owner') THEN
        CREATE ROLE ibex_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ibex_app') THEN
        CREATE ROLE ibex_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ibex_system') THEN
        CREATE ROLE ibex_system NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS;
    END IF;
END
$$;

CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS ibex_pg;

CREATE SCHEMA IF NOT EXISTS ibex_core AUTHORIZATION ibex_owner;
REVOKE ALL ON SCHEMA ibex_core FROM PUBLIC;
GRANT USAGE ON SCHEMA ibex_core TO ibex_app, ibex_system;
