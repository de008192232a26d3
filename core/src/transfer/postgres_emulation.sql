-- weir's emulation of CockroachDB's session transfer functions for stock PostgreSQL.
--
-- Install it once per database (psql -v ON_ERROR_STOP=1 -f postgres_emulation.sql), as a
-- superuser or the database owner; installing it again replaces the functions and keeps the
-- table. With `Dialect::postgres()` the transfer machine then runs:
--   on the old server: SELECT * FROM weir.show_transfer_state('<key>')
--   on the new server: SELECT weir.deserialize_session(decode('<state>', 'base64'))
-- and dials the new server with the startup parameter weir.session_revival_token=<token>.
-- (A `crdb:`-prefixed startup parameter would be a FATAL error in PostgreSQL; a dotted name is
-- accepted as a custom setting.) The new server must let the user in without a password
-- (`trust` in pg_hba.conf, or credentials the adapter supplies): the token proves only that the
-- state came from a transfer, it does not authenticate.
--
-- What is carried, as JSON in base64 (encode(..., 'base64') breaks lines every 76 characters, so
-- the newlines are removed before the state leaves the server):
--
-- * The user name and a fresh random token; deserialize_session returns false, and changes
--   nothing, unless both match the new session.
-- * Every setting whose source is `session` (what SET or set_config changed), except `weir.*`.
-- * Custom settings listed in the table weir.carried_settings. PostgreSQL does not list
--   placeholder settings (`SET myapp.tenant = 'acme'`) in pg_settings, so they cannot be found
--   from SQL; name the ones the application uses, once per database:
--     INSERT INTO weir.carried_settings VALUES ('myapp.tenant') ON CONFLICT DO NOTHING;
--   Each is read with current_setting(name, true) and carried when it is not null. Settings from
--   the startup packet need nothing: the new server gets the client's startup parameters again.
-- * Named prepared statements (pg_prepared_statements), recreated after the settings, so that
--   they resolve names with the same search_path. SQL PREPARE and the extended protocol's Parse
--   share one namespace, so a client's later Bind or EXECUTE of, say, `s0` finds its statement.
--   - Protocol-level statements (Parse, from_sql = false) become
--     PREPARE <name> (<parameter types>) AS <statement>. Each is first prepared under the name
--     weir_transfer_probe on the old server (parse analysis only, nothing runs), so one that
--     PREPARE cannot take (a utility statement such as SET or BEGIN) is refused here.
--   - SQL PREPAREs (from_sql = true) are replayed from their text, which PostgreSQL records as
--     the whole query string the PREPARE came in. A text that holds a `;` anywhere but at its end
--     may be several statements, and replaying it could run the others again, so it is refused,
--     even when the `;` is inside a literal or a trailing comment. A protocol-level statement
--     moved once is a SQL PREPARE on its new server, so that rule applies to its next move.
--   The unnamed statement and all portals are not carried: the safe point is an idle session,
--   where drivers Parse the unnamed statement again before using it. The new server must have
--   the same tables and types; type OIDs a client cached for its own types may differ there.
--
-- What makes show_transfer_state refuse (a non-null `error` column, so the session stays where it
-- is): an open transaction, open cursors (WITH HOLD), temporary tables, LISTEN, advisory locks, and
-- prepared statements that cannot be carried as above.

CREATE SCHEMA IF NOT EXISTS weir;
GRANT USAGE ON SCHEMA weir TO PUBLIC;

CREATE TABLE IF NOT EXISTS weir.carried_settings (name text PRIMARY KEY);
GRANT SELECT ON weir.carried_settings TO PUBLIC;

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
    settings jsonb;
    prepared jsonb := '[]';
    stmt record;
    types text;
    doc jsonb;
BEGIN
    transfer_key := key;
    -- Session state that cannot be replayed makes the transfer fail (recoverably).
    IF pg_catalog.transaction_timestamp() <> pg_catalog.statement_timestamp() THEN
        problem := 'cannot serialize a session with an open transaction';
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

    IF problem IS NULL THEN
        FOR stmt IN SELECT p.name, p.statement, p.parameter_types, p.from_sql
                      FROM pg_catalog.pg_prepared_statements AS p ORDER BY p.name LOOP
            IF stmt.from_sql THEN
                IF pg_catalog.strpos(pg_catalog.rtrim(stmt.statement, E' \t\r\n;'), ';') > 0 THEN
                    problem := pg_catalog.format(
                        'cannot serialize prepared statement %I: its text may hold more than one statement',
                        stmt.name);
                    EXIT;
                END IF;
                prepared := prepared || pg_catalog.jsonb_build_array(stmt.statement);
                CONTINUE;
            END IF;
            types := '';
            IF pg_catalog.cardinality(stmt.parameter_types) > 0 THEN
                types := ' (' || pg_catalog.array_to_string(stmt.parameter_types::text[], ', ') || ')';
            END IF;
            BEGIN
                EXECUTE 'PREPARE weir_transfer_probe' || types || ' AS ' || stmt.statement;
                EXECUTE 'DEALLOCATE weir_transfer_probe';
            EXCEPTION WHEN OTHERS THEN
                problem := pg_catalog.format('cannot serialize prepared statement %I: %s',
                                             stmt.name, SQLERRM);
                EXIT;
            END;
            prepared := prepared || pg_catalog.jsonb_build_array(
                'PREPARE ' || pg_catalog.quote_ident(stmt.name) || types || ' AS ' || stmt.statement);
        END LOOP;
    END IF;

    IF problem IS NOT NULL THEN
        error := problem;
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT COALESCE(pg_catalog.jsonb_object_agg(s.name, s.value), '{}'::jsonb)
      INTO settings
      FROM (SELECT ps.name, pg_catalog.current_setting(ps.name) AS value
              FROM pg_catalog.pg_settings AS ps
             WHERE ps.source = 'session' AND ps.name NOT LIKE 'weir.%'
            UNION
            SELECT c.name, pg_catalog.current_setting(c.name, true)
              FROM weir.carried_settings AS c
             WHERE c.name NOT LIKE 'weir.%'
               AND pg_catalog.current_setting(c.name, true) IS NOT NULL) AS s;

    token := pg_catalog.encode(pg_catalog.decode(pg_catalog.md5(
        pg_catalog.random()::text || pg_catalog.clock_timestamp()::text
        || pg_catalog.pg_backend_pid()::text), 'hex'), 'base64');
    doc := pg_catalog.jsonb_build_object('user', session_user::text, 'token', token,
                                         'settings', settings, 'prepared', prepared);

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
    command text;
BEGIN
    doc := pg_catalog.convert_from(state, 'UTF8')::jsonb;
    IF doc->>'user' IS DISTINCT FROM session_user::text
       OR doc->>'token' IS DISTINCT FROM pg_catalog.current_setting('weir.session_revival_token', true)
    THEN
        RETURN false;
    END IF;
    -- Settings first: the prepared statements resolve names with the session's search_path.
    FOR setting IN SELECT e.key, e.value FROM pg_catalog.jsonb_each_text(doc->'settings') AS e LOOP
        PERFORM pg_catalog.set_config(setting.key, setting.value, false);
    END LOOP;
    FOR command IN SELECT pg_catalog.jsonb_array_elements_text(
                              COALESCE(doc->'prepared', '[]'::jsonb)) LOOP
        EXECUTE command;
    END LOOP;
    RETURN true;
END
$fn$;
