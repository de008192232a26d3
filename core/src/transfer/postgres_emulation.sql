-- weir's emulation of CockroachDB's session transfer functions for stock PostgreSQL.
--
-- Install it once per database (psql -v ON_ERROR_STOP=1 -f postgres_emulation.sql), as a
-- superuser or the database owner; installing it again replaces the functions and keeps the
-- table. With `Dialect::postgres()` the transfer machine then runs:
--   on the old server: SELECT * FROM weir.show_transfer_state('<key>')
--   on the new server: SELECT weir.deserialize_session(decode('<state>', 'base64'))
-- and dials the new server with the startup parameter weir.session_revival_token=<token>; or,
-- on a server connection that is already started (an adapter reusing, after DISCARD ALL, a
-- connection another session left), SELECT weir.deserialize_session(decode(...), '<token>').
-- (A `crdb:`-prefixed startup parameter would be a FATAL error in PostgreSQL; a dotted name is
-- accepted as a custom setting.) The new server must let the user in without a password
-- (`trust` in pg_hba.conf, or credentials the adapter supplies): the token proves only that the
-- state came from a transfer, it does not authenticate.
--
-- What is carried, as JSON in base64 (encode(..., 'base64') breaks lines every 76 characters, so
-- the newlines are removed before the state leaves the server):
--
-- * The user name and a fresh random token (the 16 bytes of a gen_random_uuid());
--   deserialize_session returns false, and changes nothing, unless both match the new session.
-- * Every setting whose source is `session` (what SET or set_config changed), except `weir.*`.
-- * Custom settings listed in the table weir.carried_settings. PostgreSQL does not list
--   placeholder settings (`SET myapp.tenant = 'acme'`) in pg_settings, so they cannot be found
--   from SQL; name the ones the application uses, once per database:
--     INSERT INTO weir.carried_settings VALUES ('myapp.tenant') ON CONFLICT DO NOTHING;
--   Each is read with current_setting(name, true) and carried when it is not null. Settings from
--   the startup packet need nothing: the new server gets the client's startup parameters again.
-- * Statements made with SQL PREPARE (pg_prepared_statements where from_sql), recreated after
--   the settings, so that they resolve names with the same search_path. They are replayed from
--   their text, which PostgreSQL records as the whole query string the PREPARE came in. A text
--   that holds a `;` anywhere but at its end may be several statements, and replaying it could
--   run the others again, so it is refused, even when the `;` is inside a literal or a trailing
--   comment.
-- * Not here: statements made with the extended protocol's Parse (from_sql = false). The
--   transfer machine keeps the client's Parse messages as they pass and sends them again to the
--   new server once deserialize_session has returned, so any statement Parse took (BEGIN and
--   SET included) moves, and stays a protocol-level statement. Both kinds share one namespace
--   on the new server, as on the old. The unnamed statement and all portals are not carried:
--   the safe point is an idle session, where drivers Parse the unnamed statement again before
--   using it. The new server must have the same tables and types; type OIDs a client cached
--   for its own types may differ there.
--
-- What makes show_transfer_state refuse (a non-null `error` column, so the session stays where it
-- is): an open transaction, open cursors (WITH HOLD), temporary tables, LISTEN, advisory locks, and
-- SQL-prepared statements that cannot be carried as above.

CREATE SCHEMA IF NOT EXISTS weir;
GRANT USAGE ON SCHEMA weir TO PUBLIC;

CREATE TABLE IF NOT EXISTS weir.carried_settings (name text PRIMARY KEY);
GRANT SELECT ON weir.carried_settings TO PUBLIC;

-- Both functions are LANGUAGE sql: every move lands on a backend that has not called them yet,
-- and a first call of a PL/pgSQL function pays for loading PL/pgSQL and compiling the function.
-- They call the functions behind the pg_settings, pg_locks, pg_cursors and
-- pg_prepared_statements views rather than the views (no view rule to load), skip the pg_class
-- scan when the session never had a temporary schema (pg_my_temp_schema() = 0), and reach
-- PL/pgSQL (needed for the dynamic PREPAREs) only through the SQL wrapper below, so a session
-- without SQL-prepared statements never loads it.

-- Earlier versions of this file probed protocol-level statements with these.
DROP FUNCTION IF EXISTS weir.probe_prepared_statement(text, text, text);
DROP FUNCTION IF EXISTS weir.prepare_error(text);

-- Runs one statement (a PREPARE being replayed).
CREATE OR REPLACE FUNCTION weir.run_statement(command text)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    EXECUTE command;
END
$fn$;

-- A SQL wrapper, not inlined (it has a FROM clause), so the PL/pgSQL function above is looked
-- up, and PL/pgSQL loaded, only when the wrapper is actually called.
CREATE OR REPLACE FUNCTION weir.replay_prepared_statements(commands jsonb)
RETURNS bigint
LANGUAGE sql VOLATILE AS $fn$
SELECT pg_catalog.count(weir.run_statement(c.command))
  FROM pg_catalog.jsonb_array_elements_text(commands) AS c(command)
$fn$;

-- The SQL-prepared statements as the commands that recreate them (error null), or the reason
-- the first of them, by name, that cannot be carried cannot (commands null). A function of its
-- own, called only when there are SQL-prepared statements, so that the state query of a session
-- without any does not parse and plan this part.
CREATE OR REPLACE FUNCTION weir.carry_prepared_statements(OUT error text, OUT commands jsonb)
LANGUAGE sql VOLATILE AS $fn$
WITH statements AS MATERIALIZED (
    SELECT p.name, p.statement
      FROM pg_catalog.pg_prepared_statement() AS p
     WHERE p.from_sql
),
problem AS MATERIALIZED (
    SELECT pg_catalog.format('cannot serialize prepared statement %I: '
                             'its text may hold more than one statement', s.name) AS problem
      FROM statements AS s
     WHERE pg_catalog.strpos(pg_catalog.rtrim(s.statement, E' \t\r\n;'), ';') > 0
     ORDER BY s.name
     LIMIT 1
)
SELECT (SELECT p.problem FROM problem AS p),
       CASE WHEN NOT EXISTS (SELECT 1 FROM problem) THEN
           (SELECT COALESCE(pg_catalog.jsonb_agg(s.statement ORDER BY s.name), '[]'::jsonb)
              FROM statements AS s)
       END
$fn$;

CREATE OR REPLACE FUNCTION weir.show_transfer_state(key text)
RETURNS TABLE (
    error text,
    session_state_base64 text,
    session_revival_token_base64 text,
    transfer_key text
)
LANGUAGE sql VOLATILE AS $fn$
WITH prepared AS MATERIALIZED (
    SELECT c.error, c.commands
      FROM weir.carry_prepared_statements() AS c
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statement() AS p WHERE p.from_sql)
),
-- Session state that cannot be replayed makes the transfer fail (recoverably); the checks run
-- in this order and stop at the first that fails.
refusal AS MATERIALIZED (
    SELECT CASE
        WHEN pg_catalog.transaction_timestamp() <> pg_catalog.statement_timestamp() THEN
            'cannot serialize a session with an open transaction'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_cursor()) THEN
            'cannot serialize a session with open cursors'
        -- pg_my_temp_schema() is 0 until the session first creates a temporary object.
        WHEN pg_catalog.pg_my_temp_schema() <> 0
             AND EXISTS (SELECT 1 FROM pg_catalog.pg_class
                          WHERE relnamespace = pg_catalog.pg_my_temp_schema()) THEN
            'cannot serialize a session with temporary tables'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels()) THEN
            'cannot serialize a session that listens on channels'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_lock_status() AS l
                      WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid()) THEN
            'cannot serialize a session that holds advisory locks'
        ELSE (SELECT p.error FROM prepared AS p)
    END AS error
),
doc AS MATERIALIZED (
    SELECT pg_catalog.jsonb_build_object(
        'user', session_user::text,
        'token', pg_catalog.encode(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), 'base64'),
        'settings',
        (SELECT COALESCE(pg_catalog.jsonb_object_agg(v.name, v.value), '{}'::jsonb)
           FROM (SELECT a.name, pg_catalog.current_setting(a.name) AS value
                   FROM pg_catalog.pg_show_all_settings() AS a
                  WHERE a.source = 'session' AND a.name NOT LIKE 'weir.%'
                 UNION
                 SELECT c.name, pg_catalog.current_setting(c.name, true)
                   FROM weir.carried_settings AS c
                  WHERE c.name NOT LIKE 'weir.%'
                    AND pg_catalog.current_setting(c.name, true) IS NOT NULL) AS v),
        -- Settings are replayed first, so these resolve names with the session's search_path.
        'prepared', COALESCE((SELECT p.commands FROM prepared AS p), '[]'::jsonb)) AS doc
      FROM refusal AS r
     WHERE r.error IS NULL
)
SELECT r.error,
       (SELECT pg_catalog.translate(
                   pg_catalog.encode(pg_catalog.convert_to(d.doc::text, 'UTF8'), 'base64'),
                   E'\n\r', '')
          FROM doc AS d),
       (SELECT d.doc->>'token' FROM doc AS d),
       key
  FROM refusal AS r
$fn$;

-- The new session's side. `token` must be the one the state carries: a server dialled for the
-- move gets it as the startup setting weir.session_revival_token (the one-argument form), a
-- server that was already started and reset (a proxy reusing a connection another session
-- left) gets it as the argument.
CREATE OR REPLACE FUNCTION weir.deserialize_session(state bytea, token text)
RETURNS boolean
LANGUAGE sql VOLATILE AS $fn$
-- Settings first: the prepared statements resolve names with the session's search_path (and so
-- do the protocol-level ones the transfer machine sends once this has returned). Neither
-- statement changes anything unless the user and the token match.
WITH d AS MATERIALIZED (SELECT pg_catalog.convert_from(state, 'UTF8')::jsonb AS doc)
SELECT pg_catalog.set_config(e.key, e.value, false)
  FROM d, pg_catalog.jsonb_each_text(d.doc->'settings') AS e
 WHERE d.doc->>'user' IS NOT DISTINCT FROM session_user::text
   AND d.doc->>'token' IS NOT DISTINCT FROM token;

WITH d AS MATERIALIZED (SELECT pg_catalog.convert_from(state, 'UTF8')::jsonb AS doc)
SELECT weir.replay_prepared_statements(d.doc->'prepared')
  FROM d
 WHERE d.doc->>'user' IS NOT DISTINCT FROM session_user::text
   AND d.doc->>'token' IS NOT DISTINCT FROM token
   AND pg_catalog.jsonb_array_length(COALESCE(d.doc->'prepared', '[]'::jsonb)) > 0;

WITH d AS MATERIALIZED (SELECT pg_catalog.convert_from(state, 'UTF8')::jsonb AS doc)
SELECT d.doc->>'user' IS NOT DISTINCT FROM session_user::text
   AND d.doc->>'token' IS NOT DISTINCT FROM token
  FROM d
$fn$;

CREATE OR REPLACE FUNCTION weir.deserialize_session(state bytea)
RETURNS boolean
LANGUAGE sql VOLATILE AS $fn$
SELECT weir.deserialize_session(state,
                                pg_catalog.current_setting('weir.session_revival_token', true))
$fn$;
