-- record_usage takes the usage row's id from its caller (p_id, sql/api/usage.sql): the proxy
-- retries a recording that a database restart cut off, and first looks whether the row of the
-- earlier attempt committed, so an answered call is recorded exactly once. The new parameter
-- changes the signature: the old one goes here and sql/api re-creates the function.
DROP FUNCTION IF EXISTS ibex_core.record_usage(uuid, uuid, uuid, uuid, text, integer, integer, integer, integer, boolean,
                                                integer, integer, text);
