-- IBEX 0016: applications write only through IBEX's functions.
--
-- Until now the application role could INSERT, UPDATE and DELETE tenant tables directly. Row-level
-- security kept it inside its org, but not inside the write pipeline: it could store raw PII as a
-- memory, rewrite a memory's content without a version, forge history and usage rows, move its
-- sessions ahead in the extraction queue, mint an admin token, or reactivate its suspended org
-- (and learn other orgs' slugs from the unique violations). Now it keeps SELECT (its own org's
-- rows) and writes through functions, which are SECURITY DEFINER (owned by ibex_owner, search_path
-- pinned) and still act for the caller's org only: they assert it, and row-level security, forced
-- on the owner too, compares with the org bound to the caller's login. The sidecar (a member of
-- ibex_app) writes through the same functions.
SET LOCAL ROLE ibex_owner;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA ibex_core FROM ibex_app;
RESET ROLE;

-- The sidecar is trusted with one direct write: API tokens, which it creates and revokes for an
-- operator it authenticated (`ibex token create` with the sidecar's URL, the management API).
-- Application logins are not members of ibex_sidecar (bind_login refuses them), so they cannot.
GRANT INSERT, UPDATE ON ibex_core.api_tokens TO ibex_sidecar;
