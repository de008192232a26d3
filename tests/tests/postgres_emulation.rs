//! weir's PostgreSQL emulation of CockroachDB's session transfer, on real PostgreSQL clusters
//! started by `weir_tests::postgres`, driven by hand with tokio-postgres (no proxy): the state query
//! on one cluster, then a new connection to another with the revival token, then deserialize.

use std::net::TcpStream;
use std::path::PathBuf;

use tokio_postgres::{Client, SimpleQueryMessage};
use weir::transfer::{Dialect, STATE_COLUMNS};
use weir_tests::postgres::{connect, Cluster};

/// The state query's one row: (error, state, token).
async fn transfer_state(client: &Client) -> (Option<String>, Option<String>, Option<String>) {
    let sql = Dialect::postgres().state_query("key-1");
    let messages = client.simple_query(&sql).await.expect("state query");
    let rows: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1, "one row");
    let row = rows[0];
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, STATE_COLUMNS);
    assert_eq!(row.get(3), Some("key-1"));
    (
        row.get(0).map(str::to_owned),
        row.get(1).map(str::to_owned),
        row.get(2).map(str::to_owned),
    )
}

/// A connection to `to` with the revival token as a startup setting, the deserialize query's
/// answer on it, and the connection.
async fn revive(to: &Cluster, state: &str, token: &str) -> (bool, Client) {
    let mut config = to.config();
    config.options(format!("-c {}={token}", Dialect::postgres().token_param));
    let client = connect(&config).await.expect("connect to the new server");
    let row = client
        .query_one(Dialect::postgres().deserialize_query(state).as_str(), &[])
        .await
        .expect("deserialize query");
    (row.get::<_, bool>(0), client)
}

/// Moves the session of `client` from its cluster to `to` by hand.
async fn move_session(client: &Client, to: &Cluster) -> Client {
    let (error, state, token) = transfer_state(client).await;
    assert_eq!(error, None, "the state query refused");
    let state = state.expect("state");
    assert!(!state.contains('\n') && state.len() < 2000, "{state}");
    let (ok, new) = revive(to, &state, &token.expect("token")).await;
    assert!(ok, "deserialize_session returned false");
    new
}

/// The first column of each row of a simple query.
async fn simple_column(client: &Client, sql: &str) -> Vec<Option<String>> {
    let messages = client.simple_query(sql).await.unwrap();
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect()
}

/// The name tokio-postgres gave the statement with this text (its counter is process-wide).
async fn statement_name(client: &Client, text: &str) -> String {
    let sql = "SELECT name FROM pg_prepared_statements WHERE statement = $1 AND NOT from_sql";
    client.query_one(sql, &[&text]).await.unwrap().get(0)
}

async fn show(client: &Client, setting: &str) -> String {
    let row = client
        .query_one("SELECT current_setting($1, true)", &[&setting])
        .await
        .unwrap();
    row.get::<_, Option<String>>(0).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_prepared_statements_survive_a_move() {
    let (a, b) = (Cluster::start().unwrap(), Cluster::start().unwrap());
    for cluster in [&a, &b] {
        cluster.carry_settings(&["myapp.tenant"]).unwrap();
        cluster
            .psql("CREATE SCHEMA app; CREATE TABLE app.items (id int, name text);")
            .unwrap();
    }
    b.psql("INSERT INTO app.items VALUES (1, 'on b'), (2, 'also on b');")
        .unwrap();

    let old = a.connect().await.unwrap();
    old.batch_execute(
        "SET application_name = 'weir-test'; SET search_path = app, public; \
         SET myapp.tenant = 'acme'; SET statement_timeout = '42s'",
    )
    .await
    .unwrap();
    // SQL PREPAREs, each sent alone: the text PostgreSQL keeps is the whole query string.
    old.batch_execute("PREPARE by_id (int) AS SELECT name FROM items WHERE id = $1")
        .await
        .unwrap();
    old.batch_execute("PREPARE with_semicolon_at_end AS SELECT count(*) FROM items; ")
        .await
        .unwrap();
    // A protocol-level (Parse) statement, named s0, s1, ... by tokio-postgres: the transfer
    // machine carries those, not the SQL, so it stays behind here.
    let by_name_sql = "SELECT id FROM items WHERE name = $1 ORDER BY id";
    let by_name = old.prepare(by_name_sql).await.unwrap();
    let by_name_id = statement_name(&old, by_name_sql).await;
    let pid_a: i32 = old
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let new = move_session(&old, &b).await;

    assert_eq!(show(&new, "application_name").await, "weir-test");
    assert_eq!(show(&new, "search_path").await, "app, public");
    assert_eq!(show(&new, "myapp.tenant").await, "acme");
    assert_eq!(show(&new, "statement_timeout").await, "42s");
    // The revival token is not itself carried as a setting.
    let token_settings: i64 = new
        .query_one(
            "SELECT count(*) FROM pg_settings WHERE name LIKE 'weir.%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(token_settings, 0);

    // The SQL-prepared statements run on `b` under the same names.
    assert_eq!(
        simple_column(&new, "EXECUTE by_id(1)").await,
        [Some("on b".into())]
    );
    assert_eq!(
        simple_column(&new, "EXECUTE with_semicolon_at_end").await,
        [Some("2".into())]
    );
    let names: Vec<String> = new
        .query("SELECT name FROM pg_prepared_statements ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in ["by_id", "with_semicolon_at_end"] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    assert!(!names.contains(&by_name_id), "{names:?}");

    // The old session is untouched (still on `a`, with its statements) until it is closed.
    assert!(old.query(&by_name, &[&"on b"]).await.unwrap().is_empty());
    assert!(a.terminate_backend(pid_a).unwrap());
    assert!(old.query_one("SELECT 1", &[]).await.is_err());

    // A second move carries the SQL ones again, as SQL ones.
    let again = move_session(&new, &a).await;
    a.psql("INSERT INTO app.items VALUES (7, 'back on a');")
        .unwrap();
    assert_eq!(
        simple_column(&again, "EXECUTE by_id(7)").await,
        [Some("back on a".into())]
    );
    assert_eq!(show(&again, "myapp.tenant").await, "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_or_user_changes_nothing() {
    let (a, b) = (Cluster::start().unwrap(), Cluster::start().unwrap());
    b.psql("CREATE ROLE other LOGIN;").unwrap();
    let old = a.connect().await.unwrap();
    old.batch_execute("SET application_name = 'moved'")
        .await
        .unwrap();
    old.batch_execute("PREPARE p AS SELECT 1").await.unwrap();
    let (error, state, token) = transfer_state(&old).await;
    assert_eq!(error, None);
    let (state, token) = (state.unwrap(), token.unwrap());

    let check = |client: Client| async move {
        assert_eq!(show(&client, "application_name").await, "");
        // A simple query, as tokio-postgres' own statement would be listed while it runs.
        let n = simple_column(&client, "SELECT count(*) FROM pg_prepared_statements").await;
        assert_eq!(n, [Some("0".into())]);
    };
    let (ok, client) = revive(&b, &state, "bm90IHRoZSB0b2tlbg==").await;
    assert!(!ok);
    check(client).await;
    // No token at all.
    let client = b.connect().await.unwrap();
    let sql = Dialect::postgres().deserialize_query(&state);
    let ok: bool = client.query_one(sql.as_str(), &[]).await.unwrap().get(0);
    assert!(!ok);
    check(client).await;
    // The right token, but another user.
    let mut config = b.config();
    config
        .user("other")
        .options(format!("-c weir.session_revival_token={token}"));
    let client = connect(&config).await.unwrap();
    let sql = Dialect::postgres().deserialize_query(&state);
    let ok: bool = client.query_one(sql.as_str(), &[]).await.unwrap().get(0);
    assert!(!ok);
    check(client).await;

    // An already started connection gets the token as an argument: a wrong one changes
    // nothing, the right one moves the session.
    let client = b.connect().await.unwrap();
    let started = |token: &str| {
        Dialect::postgres()
            .started_server_query(&state, token)
            .unwrap()
    };
    let wrong = started("bm90IHRoZSB0b2tlbg==");
    let ok: bool = client.query_one(wrong.as_str(), &[]).await.unwrap().get(0);
    assert!(!ok);
    check(client).await;
    let client = b.connect().await.unwrap();
    let ok: bool = client
        .query_one(started(&token).as_str(), &[])
        .await
        .unwrap()
        .get(0);
    assert!(ok);
    assert_eq!(show(&client, "application_name").await, "moved");
    let n = simple_column(&client, "SELECT count(*) FROM pg_prepared_statements").await;
    assert_eq!(n, [Some("1".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_that_cannot_be_carried_is_refused() {
    let a = Cluster::start().unwrap();
    let cases: [(&str, &str, &str); 7] = [
        (
            "BEGIN",
            "COMMIT",
            "cannot serialize a session with an open transaction",
        ),
        (
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "CLOSE c",
            "cannot serialize a session with open cursors",
        ),
        (
            "CREATE TEMP TABLE t (x int)",
            "DROP TABLE t",
            "cannot serialize a session with temporary tables",
        ),
        (
            "LISTEN ch",
            "UNLISTEN ch",
            "cannot serialize a session that listens on channels",
        ),
        (
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_advisory_unlock(1)",
            "cannot serialize a session that holds advisory locks",
        ),
        (
            "PREPARE two AS SELECT 1; SELECT 2",
            "DEALLOCATE two",
            "cannot serialize prepared statement two: its text may hold more than one statement",
        ),
        (
            "PREPARE \"Odd Name\" AS SELECT ';'",
            "DEALLOCATE \"Odd Name\"",
            "cannot serialize prepared statement \"Odd Name\": its text may hold more than one \
             statement",
        ),
    ];
    let client = a.connect().await.unwrap();
    for (setup, undo, expected) in cases {
        client.batch_execute(setup).await.unwrap();
        let (error, state, token) = transfer_state(&client).await;
        assert_eq!(error.as_deref(), Some(expected), "after {setup}");
        assert_eq!((state, token), (None, None));
        client.batch_execute(undo).await.unwrap();
    }
    // Protocol-level statements are the transfer machine's to carry, whatever they hold (SQL
    // PREPARE could not take this one): the state query leaves them out and does not refuse.
    let _statement = client.prepare("SET work_mem = '8MB'").await.unwrap();
    let _literal = client.prepare("SELECT $1::text || ';'").await.unwrap();
    let (error, state, _) = transfer_state(&client).await;
    assert_eq!(error, None);
    assert!(state.is_some());
}

#[test]
fn psql_helpers_and_stop() {
    let mut cluster = Cluster::start().unwrap();
    assert_eq!(cluster.psql("SELECT 40 + 2;").unwrap(), "42\n");
    let error = cluster.psql("SELECT nonsense;").unwrap_err();
    assert!(error.to_string().contains("nonsense"), "{error}");
    let installed = cluster
        .psql(
            "SELECT count(to_regprocedure(f)) FROM unnest(ARRAY[\
             'weir.show_transfer_state(text)', 'weir.deserialize_session(bytea)', \
             'weir.deserialize_session(bytea, text)']) AS f;",
        )
        .unwrap();
    assert_eq!(installed.trim(), "3");
    assert!(!cluster.terminate_backend(999_999).unwrap());
    assert!(cluster.is_running());
    assert!(cluster
        .connection_string()
        .contains(&format!("port={}", cluster.port())));
    TcpStream::connect(cluster.addr()).unwrap();
    cluster.stop();
    assert!(!cluster.is_running());
    assert!(TcpStream::connect(cluster.addr()).is_err());
    assert!(cluster.dir().exists());
    cluster.stop();
}

#[test]
fn drop_stops_the_server_and_removes_the_directory_even_on_panic() {
    let mut seen: Option<(std::net::SocketAddr, PathBuf)> = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cluster = Cluster::start().unwrap();
        TcpStream::connect(cluster.addr()).unwrap();
        seen = Some((cluster.addr(), cluster.dir().to_owned()));
        panic!("a failing test holding a cluster");
    }));
    assert!(result.is_err());
    let (addr, dir) = seen.unwrap();
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(
        TcpStream::connect(addr).is_err(),
        "{addr} still accepts connections"
    );
}
