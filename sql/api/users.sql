-- The people of an org, as the management API manages them: applications hold no INSERT or
-- UPDATE on the tables (migration 0016), so these functions are how a user is created, changed
-- or deactivated. A deactivated user's tokens stop working at once (authenticate_token refuses
-- them, and the users trigger of auth.sql pushes the change to every sidecar).
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.assert_user_fields(p_email text, p_display_name text, p_role text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_email IS NOT NULL AND (length(p_email) > 320 OR p_email !~ '^[^@\s]+@[^@\s]+$') THEN
        RAISE EXCEPTION 'invalid email address' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'An email is name@domain, at most 320 characters.';
    END IF;
    IF length(p_display_name) > 200 THEN
        RAISE EXCEPTION 'display name too long' USING ERRCODE = 'string_data_right_truncation',
            HINT = 'A display name holds at most 200 characters.';
    END IF;
    IF p_role IS NOT NULL AND p_role NOT IN ('owner', 'admin', 'member', 'viewer') THEN
        RAISE EXCEPTION 'invalid user role: %', p_role USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use owner, admin, member or viewer.';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION ibex_core.create_user(p_org uuid, p_email text, p_display_name text DEFAULT NULL,
                                                 p_role text DEFAULT 'member')
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_email IS NULL THEN
        RAISE EXCEPTION 'email must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM ibex_core.assert_user_fields(btrim(p_email), p_display_name, coalesce(p_role, 'member'));
    INSERT INTO ibex_core.users (org_id, email, display_name, role)
    VALUES (p_org, btrim(p_email), p_display_name, coalesce(p_role, 'member'))
    RETURNING id INTO v_id;
    RETURN v_id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a user with email % already exists in this org', btrim(p_email) USING ERRCODE = 'unique_violation',
        HINT = 'Emails are unique per org (case-insensitive).';
END
$$;

-- Changes a user's display name or role; a NULL argument keeps the current value.
CREATE OR REPLACE FUNCTION ibex_core.update_user(p_org uuid, p_user uuid, p_display_name text DEFAULT NULL,
                                                 p_role text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    PERFORM ibex_core.assert_user_fields(NULL, p_display_name, p_role);
    UPDATE ibex_core.users u
    SET display_name = coalesce(p_display_name, u.display_name), role = coalesce(p_role, u.role)
    WHERE u.org_id = p_org AND u.id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user % not found', p_user USING ERRCODE = 'no_data_found';
    END IF;
END
$$;

-- active or disabled (deactivated: the user's tokens are refused). Idempotent.
CREATE OR REPLACE FUNCTION ibex_core.set_user_status(p_org uuid, p_user uuid, p_status text)
RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_status IS NULL OR p_status NOT IN ('active', 'disabled') THEN
        RAISE EXCEPTION 'invalid user status: %', coalesce(p_status, 'NULL') USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use active or disabled.';
    END IF;
    UPDATE ibex_core.users u SET status = p_status
    WHERE u.org_id = p_org AND u.id = p_user AND u.status IS DISTINCT FROM p_status;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM ibex_core.users u WHERE u.org_id = p_org AND u.id = p_user) THEN
        RAISE EXCEPTION 'user % not found', p_user USING ERRCODE = 'no_data_found';
    END IF;
    RETURN p_status;
END
$$;

-- Applications write only through functions (migration 0016): these run with their owner's
-- privileges, for the caller's org alone (assert_org, and row-level security forced on the owner).
ALTER FUNCTION ibex_core.create_user(uuid, text, text, text) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.update_user(uuid, uuid, text, text) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.set_user_status(uuid, uuid, text) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.assert_user_fields(text, text, text), ibex_core.create_user(uuid, text, text, text),
    ibex_core.update_user(uuid, uuid, text, text), ibex_core.set_user_status(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.create_user(uuid, text, text, text), ibex_core.update_user(uuid, uuid, text, text),
    ibex_core.set_user_status(uuid, uuid, text) TO ibex_app;
