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

-- Both functions are LANGUAGE sql: every move lands on a backend that has not called them yet,
-- and a first call of a PL/pgSQL function pays for loading PL/pgSQL and compiling the function.
-- They call the functions behind the pg_settings, pg_locks, pg_cursors and
-- pg_prepared_statements views rather than the views (no view rule to load), skip the pg_class
-- scan when the session never had a temporary schema (pg_my_temp_schema() = 0), and reach
-- PL/pgSQL (needed for the dynamic PREPAREs) only through the SQL wrappers below, so a session
-- without prepared statements never loads it.
--
-- Advice for servers whose clients keep named prepared statements (tokio-postgres names every
-- statement; JDBC does after prepareThreshold executions): shared_preload_libraries = 'plpgsql'
-- in postgresql.conf (a restart) loads PL/pgSQL once in the postmaster instead of in each new
-- backend. That made the first deserialize_session of a session with one prepared statement
-- about 1 ms faster (median 3.5 to 2.5 ms, a loaded 2-core VM); the state query loads PL/pgSQL
-- too when it probes a protocol-level statement. Sessions without prepared statements gain
-- nothing from it.

-- The error PREPARE gives for `command`, or null when it takes it (nothing runs: parse analysis
-- only, and the probe statement is deallocated at once).
CREATE OR REPLACE FUNCTION weir.prepare_error(command text)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    EXECUTE command;
    EXECUTE 'DEALLOCATE weir_transfer_probe';
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END
$fn$;

-- Runs one statement (a PREPARE being replayed).
CREATE OR REPLACE FUNCTION weir.run_statement(command text)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    EXECUTE command;
END
$fn$;

-- SQL wrappers, not inlined (they have a FROM clause), so the PL/pgSQL functions above are looked
-- up, and PL/pgSQL loaded, only when a wrapper is actually called.
CREATE OR REPLACE FUNCTION weir.probe_prepared_statement(name text, types text, statement text)
RETURNS text
LANGUAGE sql VOLATILE AS $fn$
SELECT pg_catalog.format('cannot serialize prepared statement %I: %s', name, e.error)
  FROM weir.prepare_error('PREPARE weir_transfer_probe' || types || ' AS ' || statement)
       AS e(error)
 WHERE e.error IS NOT NULL
$fn$;

CREATE OR REPLACE FUNCTION weir.replay_prepared_statements(commands jsonb)
RETURNS bigint
LANGUAGE sql VOLATILE AS $fn$
SELECT pg_catalog.count(weir.run_statement(c.command))
  FROM pg_catalog.jsonb_array_elements_text(commands) AS c(command)
$fn$;

-- The named prepared statements as the commands that recreate them (error null), or the reason
-- the first of them, by name, that cannot be carried cannot (commands null). A function of its
-- own, called only when there are prepared statements, so that the state query of a session
-- without any does not parse and plan this part.
CREATE OR REPLACE FUNCTION weir.carry_prepared_statements(OUT error text, OUT commands jsonb)
LANGUAGE sql VOLATILE AS $fn$
WITH statements AS MATERIALIZED (
    SELECT p.name, p.statement, p.from_sql,
           CASE WHEN pg_catalog.cardinality(p.parameter_types) > 0
                THEN ' (' || pg_catalog.array_to_string(p.parameter_types::text[], ', ') || ')'
                ELSE '' END AS types
      FROM pg_catalog.pg_prepared_statement() AS p
),
problem AS MATERIALIZED (
    SELECT x.problem
      FROM (SELECT s.name,
                   CASE WHEN NOT s.from_sql THEN
                            weir.probe_prepared_statement(s.name, s.types, s.statement)
                        WHEN pg_catalog.strpos(pg_catalog.rtrim(s.statement, E' \t\r\n;'), ';') > 0
                        THEN
                            pg_catalog.format('cannot serialize prepared statement %I: '
                                              'its text may hold more than one statement', s.name)
                   END AS problem
              FROM statements AS s
            OFFSET 0) AS x
     WHERE x.problem IS NOT NULL
     ORDER BY x.name
     LIMIT 1
)
SELECT (SELECT p.problem FROM problem AS p),
       CASE WHEN NOT EXISTS (SELECT 1 FROM problem) THEN
           (SELECT COALESCE(pg_catalog.jsonb_agg(
                       CASE WHEN s.from_sql THEN s.statement
                            ELSE 'PREPARE ' || pg_catalog.quote_ident(s.name) || s.types || ' AS '
                                 || s.statement END
                       ORDER BY s.name), '[]'::jsonb)
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
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statement())
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
-- Settings first: the prepared statements resolve names with the session's search_path. Neither
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
