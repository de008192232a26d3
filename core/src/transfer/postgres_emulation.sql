-- weir's emulation of CockroachDB's session transfer functions for stock PostgreSQL.
--
-- Install it once per database (psql -f postgres_emulation.sql). With `Dialect::postgres()` the
-- transfer machine then runs:
--   on the old server: SELECT * FROM weir.show_transfer_state('<key>')
--   on the new server: SELECT weir.deserialize_session(decode('<state>', 'base64'))
-- and dials the new server with the startup parameter weir.session_revival_token=<token>.
-- (A `crdb:`-prefixed startup parameter would be a FATAL error in PostgreSQL; a dotted name is
-- accepted as a custom setting.) The new server must let the user in without a password
-- (`trust` in pg_hba.conf, or credentials the adapter supplies): the token proves only that the
-- state came from a transfer, it does not authenticate.
--
-- The session state is the user name, the token and every setting whose source is `session`
-- (what SET changed), as JSON in base64. encode(..., 'base64') breaks lines every 76 characters,
-- so the newlines are removed before the state leaves the server.

CREATE SCHEMA IF NOT EXISTS weir;

CREATE OR REPLACE FUNCTION weir.show_transfer_state(key text)
RETURNS TABLE (
    error text,
    session_state_base64 text,
    session_revival_token_base64 text,
    transfer_key text
)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    problem text;
    token text;
    doc jsonb;
BEGIN
    transfer_key := key;
    -- Session state that set_config cannot replay makes the transfer fail (recoverably).
    IF pg_catalog.transaction_timestamp() <> pg_catalog.statement_timestamp() THEN
        problem := 'cannot serialize a session with an open transaction';
    ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements) THEN
        problem := 'cannot serialize a session with prepared statements';
    ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_cursors) THEN
        problem := 'cannot serialize a session with open cursors';
    ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_class
                  WHERE relnamespace = pg_catalog.pg_my_temp_schema()) THEN
        problem := 'cannot serialize a session with temporary tables';
    ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels()) THEN
        problem := 'cannot serialize a session that listens on channels';
    ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_locks
                  WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()) THEN
        problem := 'cannot serialize a session that holds advisory locks';
    END IF;

    IF problem IS NOT NULL THEN
        error := problem;
        RETURN NEXT;
        RETURN;
    END IF;

    token := pg_catalog.encode(pg_catalog.decode(pg_catalog.md5(
        pg_catalog.random()::text || pg_catalog.clock_timestamp()::text
        || pg_catalog.pg_backend_pid()::text), 'hex'), 'base64');
    SELECT pg_catalog.jsonb_build_object(
               'user', session_user::text,
               'token', token,
               'settings', COALESCE(pg_catalog.jsonb_object_agg(s.name, pg_catalog.current_setting(s.name)),
                                    '{}'::jsonb))
      INTO doc
      FROM pg_catalog.pg_settings AS s
     WHERE s.source = 'session' AND s.name NOT LIKE 'weir.%';

    session_state_base64 := pg_catalog.translate(
        pg_catalog.encode(pg_catalog.convert_to(doc::text, 'UTF8'), 'base64'), E'\n\r', '');
    session_revival_token_base64 := token;
    RETURN NEXT;
END
$fn$;

CREATE OR REPLACE FUNCTION weir.deserialize_session(state bytea)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    doc jsonb;
    setting record;
BEGIN
    doc := pg_catalog.convert_from(state, 'UTF8')::jsonb;
    IF doc->>'user' IS DISTINCT FROM session_user::text
       OR doc->>'token' IS DISTINCT FROM pg_catalog.current_setting('weir.session_revival_token', true)
    THEN
        RETURN false;
    END IF;
    FOR setting IN SELECT e.key, e.value FROM pg_catalog.jsonb_each_text(doc->'settings') AS e LOOP
        PERFORM pg_catalog.set_config(setting.key, setting.value, false);
    END LOOP;
    RETURN true;
END
$fn$;
