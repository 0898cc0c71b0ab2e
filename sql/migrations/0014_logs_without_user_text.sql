-- IBEX 0014: failing statements do not write user text into the server log.
--
-- By default Postgres logs the text of every statement that fails (log_min_error_statement =
-- error), and a constraint violation's DETAIL quotes the whole failing row: a memory, a session
-- turn, a secret someone pasted. For this database:
--   * log_min_error_statement = panic: the failing statement's text is not logged;
--   * log_error_verbosity = terse: no DETAIL, HINT, QUERY or CONTEXT lines (the row, the
--     arguments of a function call);
--   * log_parameter_max_length_on_error = 0: bind parameters are never logged with an error.
-- The error itself (its SQLSTATE and primary message, which IBEX's own errors keep free of
-- content) is still logged. All three settings are superuser-only, so an application cannot turn
-- them back on; a DBA debugging can, for a session.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET log_min_error_statement = panic', current_database());
    EXECUTE format('ALTER DATABASE %I SET log_error_verbosity = terse', current_database());
    EXECUTE format('ALTER DATABASE %I SET log_parameter_max_length_on_error = 0', current_database());
END
$$;
