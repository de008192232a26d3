//! The migrating proxy (`weir_tokio::proxy`) on real PostgreSQL clusters, with tokio-postgres
//! and psql as clients: what a move keeps, when it waits, and what fails where.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use weir::transfer::{Config, Dialect, Failure, TransferResult};
use weir_tests::postgres::Cluster;
use weir_tokio::proxy::{BackendId, Proxy, ProxyConfig, RebalanceConfig, SessionId};

/// Two clusters with the same tables, and a proxy in front of them.
struct Setup {
    clusters: Vec<Cluster>,
    proxy: Proxy,
}

/// Start `n` clusters (in parallel) with the test tables and a proxy over them.
async fn setup(n: usize, rebalance: Option<RebalanceConfig>) -> Setup {
    setup_with(n, |config| config.rebalance = rebalance).await
}

/// [`setup`], with the proxy's configuration changed by `configure`.
async fn setup_with(n: usize, configure: impl FnOnce(&mut ProxyConfig)) -> Setup {
    let starts: Vec<_> = (0..n)
        .map(|_| tokio::task::spawn_blocking(Cluster::start))
        .collect();
    let mut clusters = Vec::new();
    for start in starts {
        clusters.push(start.await.unwrap().expect("start a cluster"));
    }
    for c in &clusters {
        c.carry_settings(&["myapp.tenant"]).unwrap();
        c.psql(
            "CREATE SCHEMA app; CREATE TABLE app.things (n int); \
             CREATE TABLE seq (n int PRIMARY KEY); CREATE TABLE copied (n int, note text);",
        )
        .unwrap();
    }
    let mut config = ProxyConfig::new(clusters.iter().map(Cluster::addr).collect());
    config.transfer = Config::with_dialect(Dialect::postgres());
    configure(&mut config);
    let proxy = Proxy::bind("127.0.0.1:0", config).await.unwrap();
    Setup { clusters, proxy }
}

/// A client through the proxy, with its connection task's result.
struct Conn {
    client: Client,
    connection: JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Setup {
    fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.proxy.local_addr().port())
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// Connect a client and return it with its session id.
    async fn connect(&self) -> (Conn, SessionId) {
        let before: BTreeSet<SessionId> = self.proxy.sessions().iter().map(|s| s.id).collect();
        let (client, connection) = self.config().connect(NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        let id = self
            .proxy
            .sessions()
            .into_iter()
            .map(|s| s.id)
            .find(|id| !before.contains(id))
            .expect("the new session is registered");
        (Conn { client, connection }, id)
    }

    /// Move a session and require that the move succeeded.
    async fn move_ok(&self, id: SessionId, to: Option<BackendId>) {
        let outcome = self.proxy.move_session(id, to).await.unwrap();
        assert_success(&outcome.result);
    }

    fn backend_of(&self, id: SessionId) -> BackendId {
        self.proxy
            .sessions()
            .into_iter()
            .find(|s| s.id == id)
            .expect("live session")
            .backend
    }

    fn port_of(&self, backend: BackendId) -> u16 {
        self.clusters[backend.0].port()
    }

    /// Every `seq` row on every cluster.
    fn seq_rows(&self) -> Vec<i32> {
        let mut rows: Vec<i32> = self
            .clusters
            .iter()
            .flat_map(|c| {
                c.psql("SELECT n FROM seq;")
                    .unwrap()
                    .lines()
                    .map(|l| l.parse::<i32>().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort();
        rows
    }
}

/// The port of the server the client is talking to.
async fn server_port(client: &Client) -> u16 {
    let row = client
        .query_one("SELECT current_setting('port')::int", &[])
        .await
        .unwrap();
    row.get::<_, i32>(0) as u16
}

async fn setting(client: &Client, name: &str) -> String {
    let row = client
        .query_one("SELECT current_setting($1)", &[&name])
        .await
        .unwrap();
    row.get(0)
}

/// Wait until `check` holds, for at most `secs` seconds.
async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

fn assert_success(result: &TransferResult) {
    assert_eq!(result, &TransferResult::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_move_keeps_settings_and_prepared_statements() {
    let s = setup(2, None).await;
    let (c, id) = s.connect().await;
    let c = &c.client;
    let from = s.backend_of(id);
    c.batch_execute("SET application_name = 'weir-test'")
        .await
        .unwrap();
    c.batch_execute("SET search_path = app, public")
        .await
        .unwrap();
    c.batch_execute("SET myapp.tenant = 'acme'").await.unwrap();
    c.batch_execute("PREPARE answer AS SELECT 42")
        .await
        .unwrap();
    let plus_one = c.prepare("SELECT $1::int + 1").await.unwrap();
    let insert = c.prepare("INSERT INTO things VALUES ($1)").await.unwrap();

    let outcome = s.proxy.move_session(id, None).await.unwrap();
    assert_success(&outcome.result);
    let to = s.backend_of(id);
    assert_ne!(to, from);
    assert_eq!(server_port(c).await, s.port_of(to));

    assert_eq!(setting(c, "application_name").await, "weir-test");
    assert_eq!(setting(c, "search_path").await, "app, public");
    assert_eq!(setting(c, "myapp.tenant").await, "acme");
    let row = c.query_one(&plus_one, &[&41]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let row = c.query_one("EXECUTE answer", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    // The search_path came along, so the unqualified name reaches app.things on the new server.
    c.execute(&insert, &[&7]).await.unwrap();
    let on_new = s.clusters[to.0].psql("SELECT n FROM app.things;").unwrap();
    assert_eq!(on_new, "7\n");

    let metrics = s.proxy.metrics();
    assert_eq!(metrics.transfers.success, 1);
    assert_eq!(metrics.sessions_per_backend.iter().sum::<usize>(), 1);
    assert_eq!(metrics.sessions_per_backend[to.0], 1);
}

/// The names of the protocol-level statements the server the client is on holds.
async fn protocol_statements(client: &Client) -> Vec<String> {
    // A simple query, so that no statement of its own is listed.
    let sql = "SELECT name FROM pg_prepared_statements WHERE NOT from_sql ORDER BY name";
    client
        .simple_query(sql)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_prepared_through_the_protocol_run_after_moves() {
    let s = setup(2, None).await;
    let (c, id) = s.connect().await;
    let c = &c.client;
    c.batch_execute("SET search_path = app, public")
        .await
        .unwrap();
    // Utility statements, which SQL PREPARE cannot make, beside ordinary ones.
    let begin = c.prepare("BEGIN").await.unwrap();
    let commit = c.prepare("COMMIT").await.unwrap();
    let set = c
        .prepare("SET application_name = 'set-by-statement'")
        .await
        .unwrap();
    let insert = c.prepare("INSERT INTO things VALUES ($1)").await.unwrap();
    let plus_one = c.prepare("SELECT $1::int8 + 1").await.unwrap();
    let before = protocol_statements(c).await;
    assert_eq!(before.len(), 5, "{before:?}");

    for round in 1..=3i32 {
        let from = s.backend_of(id);
        s.move_ok(id, None).await;
        let to = s.backend_of(id);
        assert_ne!(to, from);
        assert_eq!(server_port(c).await, s.port_of(to));
        assert_eq!(protocol_statements(c).await, before);

        c.execute(&begin, &[]).await.unwrap();
        c.execute(&insert, &[&round]).await.unwrap();
        c.execute(&commit, &[]).await.unwrap();
        c.execute(&set, &[]).await.unwrap();
        let row = c.query_one(&plus_one, &[&41i64]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 42);
        assert_eq!(setting(c, "application_name").await, "set-by-statement");
        let rows = s.clusters[to.0].psql("SELECT n FROM app.things;").unwrap();
        assert!(rows.contains(&round.to_string()), "{rows}");
    }
    assert_eq!(s.proxy.metrics().transfers.prepared_statements_replayed, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_closed_or_deallocated_before_a_move_are_gone_after_it() {
    let s = setup(2, None).await;
    let (c, id) = s.connect().await;
    let c = &c.client;
    let kept = c.prepare("SELECT 'kept'").await.unwrap();
    let closed = c.prepare("SELECT 'closed'").await.unwrap();
    let deallocated = c.prepare("SELECT 'deallocated'").await.unwrap();
    let names = protocol_statements(c).await;
    assert_eq!(names.len(), 3);
    let name_of = |text: &'static str| async move {
        let sql = "SELECT name FROM pg_prepared_statements WHERE statement = $1";
        c.query_one(sql, &[&text])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let kept_name = name_of("SELECT 'kept'").await;
    let closed_name = name_of("SELECT 'closed'").await;
    let deallocated_name = name_of("SELECT 'deallocated'").await;
    // Dropping a statement sends Close; SQL DEALLOCATE drops one by name.
    drop(closed);
    c.batch_execute(&format!("DEALLOCATE {deallocated_name}"))
        .await
        .unwrap();
    assert_eq!(
        protocol_statements(c).await,
        std::slice::from_ref(&kept_name)
    );

    s.move_ok(id, None).await;
    assert_eq!(protocol_statements(c).await, [kept_name]);
    let row = c.query_one(&kept, &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "kept");
    for gone in [&closed_name, &deallocated_name] {
        let err = c
            .batch_execute(&format!("EXECUTE {gone}"))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::UNDEFINED_PSTATEMENT)
        );
    }
    // tokio-postgres still holds this one and sends Close for it when it drops, which the new
    // server answers: nothing breaks.
    drop(deallocated);
    c.batch_execute("SELECT 1").await.unwrap();
    s.move_ok(id, None).await;
    assert_eq!(protocol_statements(c).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_over_the_byte_limit_keep_the_session_on_its_server() {
    let s = setup_with(2, |config| {
        config.transfer.max_prepared_statement_bytes = 1024;
    })
    .await;
    let (c, id) = s.connect().await;
    let c = &c.client;
    // Under the limit, a statement moves with its session.
    let small = c.prepare("SELECT 'small'").await.unwrap();
    s.move_ok(id, None).await;
    let from = s.backend_of(id);

    let long = format!("SELECT '{}'", "x".repeat(2000));
    let large = c.prepare(&long).await.unwrap();
    let outcome = s.proxy.move_session(id, None).await.unwrap();
    assert_eq!(
        outcome.result,
        TransferResult::Recoverable(Failure::PreparedStatementsOverLimit { limit: 1024 })
    );
    let message = Failure::PreparedStatementsOverLimit { limit: 1024 }.to_string();
    assert!(
        message.contains("max_prepared_statement_bytes"),
        "{message}"
    );
    // The session goes on where it was, with its statements.
    assert_eq!(s.backend_of(id), from);
    assert_eq!(server_port(c).await, s.port_of(from));
    let row = c.query_one(&small, &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "small");
    let row = c.query_one(&large, &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0).len(), 2000);
}

async fn backend_pid(client: &Client) -> i32 {
    let row = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_a_session_left_is_reset_and_reused_by_the_next_move() {
    let s = setup(2, None).await;
    let (first, first_id) = s.connect().await;
    let (second, second_id) = s.connect().await;
    let (a, b) = (s.backend_of(first_id), s.backend_of(second_id));
    assert_ne!(a, b);
    let (c1, c2) = (&first.client, &second.client);
    let left_behind = backend_pid(c1).await;
    // One statement per query: a SQL PREPARE is carried from its query's text.
    for sql in [
        "SET application_name = 'first'",
        "SET myapp.tenant = 'acme'",
        "PREPARE first_only AS SELECT 1",
    ] {
        c1.batch_execute(sql).await.unwrap();
    }
    c2.batch_execute("SET search_path = app, public")
        .await
        .unwrap();
    let plus_one = c2.prepare("SELECT $1::int + 1").await.unwrap();

    // The first session leaves `a`; its server there is reset and kept.
    s.move_ok(first_id, Some(b)).await;
    assert!(eventually(5, || s.proxy.metrics().idle_per_backend[a.0] == 1).await);

    // The second session moves onto that very server process, with its own state only.
    s.move_ok(second_id, Some(a)).await;
    assert_eq!(server_port(c2).await, s.port_of(a));
    assert_eq!(backend_pid(c2).await, left_behind);
    assert_eq!(setting(c2, "search_path").await, "app, public");
    assert_eq!(setting(c2, "application_name").await, "");
    let tenant = c2
        .query_one("SELECT current_setting('myapp.tenant', true)", &[])
        .await
        .unwrap();
    assert_eq!(tenant.get::<_, Option<String>>(0).unwrap_or_default(), "");
    let err = c2.batch_execute("EXECUTE first_only").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_PSTATEMENT)
    );
    let row = c2.query_one(&plus_one, &[&41]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);

    // The first session kept its own state on its dialled server.
    assert_eq!(setting(c1, "application_name").await, "first");
    assert_eq!(setting(c1, "myapp.tenant").await, "acme");
    c1.batch_execute("EXECUTE first_only").await.unwrap();

    // A cancel reaches the reused server, with the key that server issued.
    let cancel = c2.cancel_token();
    let sleeper = async { c2.batch_execute("SELECT pg_sleep(30)").await };
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel_query(NoTls).await.unwrap();
    };
    let (result, ()) = tokio::join!(sleeper, canceller);
    assert_eq!(
        result.unwrap_err().code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );

    let metrics = s.proxy.metrics();
    assert_eq!(metrics.idle_servers_taken, 1);
    assert!(eventually(5, || s.proxy.metrics().idle_servers_kept == 2).await);
    assert_eq!(metrics.transfers.success, 2);

    // Draining a backend closes what was kept for it.
    assert!(eventually(5, || s.proxy.metrics().idle_per_backend[b.0] == 1).await);
    s.proxy.set_draining(b, true).unwrap();
    assert_eq!(s.proxy.metrics().idle_per_backend[b.0], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_server_holds_no_earlier_revival_token() {
    let s = setup(2, None).await;
    let (first, first_id) = s.connect().await;
    let (second, second_id) = s.connect().await;
    let (a, b) = (s.backend_of(first_id), s.backend_of(second_id));
    let (c1, c2) = (&first.client, &second.client);
    let token = "SELECT current_setting('weir.session_revival_token', true)";
    let kept = |backend: BackendId, n: usize| {
        let proxy = &s.proxy;
        move || proxy.metrics().idle_per_backend[backend.0] == n
    };

    // The first session moves onto a server dialled for it: that server got a token at startup.
    s.move_ok(first_id, Some(b)).await;
    let dialled = backend_pid(c1).await;
    let own: Option<String> = c1.query_one(token, &[]).await.unwrap().get(0);
    assert!(own.is_some_and(|t| !t.is_empty()));
    assert!(eventually(5, kept(a, 1)).await);
    s.move_ok(second_id, Some(a)).await;
    assert!(eventually(5, kept(b, 1)).await);
    // It leaves; the dialled server is reset and kept, the newest on b.
    s.move_ok(first_id, Some(a)).await;
    assert!(eventually(5, kept(b, 2)).await);

    s.move_ok(second_id, Some(b)).await;
    assert_eq!(backend_pid(c2).await, dialled);
    let left: Option<String> = c2.query_one(token, &[]).await.unwrap().get(0);
    assert_eq!(left.unwrap_or_default(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_server_a_failed_attempt_did_not_use_goes_back() {
    let s = setup(2, None).await;
    let (first, first_id) = s.connect().await;
    let (second, second_id) = s.connect().await;
    let (a, b) = (s.backend_of(first_id), s.backend_of(second_id));
    s.move_ok(first_id, Some(b)).await;
    assert!(eventually(5, || s.proxy.metrics().idle_per_backend[a.0] == 1).await);

    // A temporary table makes the state query refuse, so no attempt reaches the kept server.
    second
        .client
        .batch_execute("CREATE TEMP TABLE scratch (n int)")
        .await
        .unwrap();
    let outcome = s.proxy.move_session(second_id, Some(a)).await.unwrap();
    assert!(
        matches!(
            outcome.result,
            TransferResult::Recoverable(Failure::StateError(_))
        ),
        "{:?}",
        outcome.result
    );
    let metrics = s.proxy.metrics();
    assert_eq!(metrics.transfer_retries, 2);
    assert_eq!(metrics.idle_servers_taken, 3);
    assert_eq!(metrics.idle_per_backend[a.0], 1);

    // It is still good: the next move, once the table is gone, lands on it.
    second
        .client
        .batch_execute("DROP TABLE scratch")
        .await
        .unwrap();
    let kept_pid = {
        let row = s.clusters[a.0]
            .psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'idle' AND pid <> pg_backend_pid();")
            .unwrap();
        row.trim().parse::<i32>().unwrap()
    };
    s.move_ok(second_id, Some(a)).await;
    assert_eq!(backend_pid(&second.client).await, kept_pid);
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_inside_a_transaction_waits_for_commit() {
    let s = setup(2, None).await;
    let (c, id) = s.connect().await;
    let from = s.backend_of(id);
    c.client
        .batch_execute("BEGIN; INSERT INTO seq VALUES (1)")
        .await
        .unwrap();
    let proxy_move = {
        let proxy = &s.proxy;
        async move { proxy.move_session(id, None).await }
    };
    let committed = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Still in the transaction: not moved, still on the first server.
        assert_eq!(s.backend_of(id), from);
        assert!(s.proxy.sessions()[0].moving);
        assert_eq!(server_port(&c.client).await, s.port_of(from));
        c.client
            .batch_execute("INSERT INTO seq VALUES (2); COMMIT")
            .await
            .unwrap();
        std::time::Instant::now()
    };
    let (outcome, committed_at) = tokio::join!(proxy_move, committed);
    let outcome = outcome.unwrap();
    assert_success(&outcome.result);
    assert!(committed_at.elapsed() < Duration::from_secs(2));
    assert!(outcome.latency >= Duration::from_millis(300));
    assert_eq!(server_port(&c.client).await, s.port_of(s.backend_of(id)));
    assert_ne!(s.backend_of(id), from);
    assert_eq!(
        s.clusters[from.0]
            .psql("SELECT n FROM seq ORDER BY n;")
            .unwrap(),
        "1\n2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_is_not_moved_until_it_ends() {
    let s = setup(2, None).await;
    let (c, id) = s.connect().await;
    let from = s.backend_of(id);
    c.client.batch_execute("BEGIN").await.unwrap();
    let error = c.client.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    let proxy_move = async { s.proxy.move_session(id, None).await };
    let rolled_back = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(s.backend_of(id), from, "moved inside a failed transaction");
        let still_failed = c.client.batch_execute("SELECT 1").await.unwrap_err();
        assert_eq!(
            still_failed.code(),
            Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
        );
        c.client.batch_execute("ROLLBACK").await.unwrap();
    };
    let (outcome, ()) = tokio::join!(proxy_move, rolled_back);
    assert_success(&outcome.unwrap().result);
    assert_ne!(s.backend_of(id), from);
    assert_eq!(server_port(&c.client).await, s.port_of(s.backend_of(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_client_moves_without_losing_a_statement() {
    let s = setup(2, None).await;
    let (c, id) = s.connect().await;
    let insert = c
        .client
        .prepare("INSERT INTO seq VALUES ($1)")
        .await
        .unwrap();
    // tokio-postgres sends every request at once when their futures are polled together.
    let inserts = futures_util::future::join_all((1..=300).map(|n| {
        let client = &c.client;
        let insert = &insert;
        async move { client.execute(insert, &[&n]).await }
    }));
    let mover = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        s.proxy.move_session(id, None).await
    };
    let (results, outcome) = tokio::join!(inserts, mover);
    for r in results {
        assert_eq!(r.unwrap(), 1);
    }
    assert_success(&outcome.unwrap().result);
    assert_eq!(s.seq_rows(), (1..=300).collect::<Vec<_>>());
    // The prepared insert works on the new server too.
    c.client.execute(&insert, &[&301]).await.unwrap();
    assert_eq!(s.seq_rows().len(), 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_finishes_before_the_move() {
    let s = setup(2, None).await;
    let (c, id) = s.connect().await;
    let from = s.backend_of(id);
    let copy = async {
        let sink = c.client.copy_in("COPY copied FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        for chunk in 0..20 {
            let mut rows = String::new();
            for n in chunk * 500..(chunk + 1) * 500 {
                rows.push_str(&format!("{n}\trow {n}\n"));
            }
            sink.send(Bytes::from(rows)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sink.finish().await.unwrap()
    };
    let mover = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(s.backend_of(id), from);
        s.proxy.move_session(id, None).await
    };
    let (copied, outcome) = tokio::join!(copy, mover);
    assert_eq!(copied, 10_000);
    assert_success(&outcome.unwrap().result);
    let to = s.backend_of(id);
    assert_ne!(to, from);
    let count =
        |b: BackendId| s.clusters[b.0].psql("SELECT count(*), count(DISTINCT n) FROM copied;");
    assert_eq!(count(from).unwrap(), "10000|10000\n");
    assert_eq!(count(to).unwrap(), "0|0\n");
    assert_eq!(server_port(&c.client).await, s.port_of(to));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_leaves_the_session_working() {
    let mut s = setup(2, None).await;
    let (c, id) = s.connect().await;
    let from = s.backend_of(id);
    let other = BackendId(1 - from.0);
    s.clusters[other.0].stop();
    let outcome = s.proxy.move_session(id, Some(other)).await.unwrap();
    match &outcome.result {
        TransferResult::Recoverable(Failure::DialFailed(_)) => {}
        other => panic!("expected a recoverable dial failure, got {other:?}"),
    }
    assert_eq!(
        s.proxy.metrics().transfer_retries,
        2,
        "three attempts in all"
    );
    assert_eq!(s.proxy.metrics().transfers.error_recoverable, 3);
    assert_eq!(s.backend_of(id), from);
    assert_eq!(server_port(&c.client).await, s.port_of(from));
    c.client
        .batch_execute("INSERT INTO seq VALUES (1)")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_old_backend_mid_transfer_closes_only_that_client() {
    let s = setup(2, None).await;
    let (victim, victim_id) = s.connect().await;
    let (bystander, _) = s.connect().await;
    let from = s.backend_of(victim_id);
    let pid: i32 = victim
        .client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    // Hold a lock the state query needs, so the transfer stops inside it.
    let locker = s.clusters[from.0].connect().await.unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE weir.carried_settings IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let proxy_move = async { s.proxy.move_session(victim_id, None).await };
    let kill = async {
        let waiting = "SELECT count(*) FROM pg_stat_activity \
                       WHERE pid = $1 AND wait_event_type = 'Lock'";
        let mut blocked = false;
        for _ in 0..100 {
            let n: i64 = locker.query_one(waiting, &[&pid]).await.unwrap().get(0);
            if n == 1 {
                blocked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(blocked, "the state query never waited for the lock");
        assert!(s.clusters[from.0].terminate_backend(pid).unwrap());
    };
    let (outcome, ()) = tokio::join!(proxy_move, kill);
    match &outcome.unwrap().result {
        TransferResult::Fatal(Failure::AmbiguousError(_)) => {}
        other => panic!("expected a fatal transfer, got {other:?}"),
    }
    let error = victim.connection.await.unwrap().unwrap_err();
    let db = error.as_db_error().expect("the proxy's FATAL error");
    assert_eq!(db.severity(), "FATAL");
    assert!(
        db.message()
            .starts_with("weir: the session could not be moved and was closed"),
        "{db:?}"
    );
    assert!(victim.client.batch_execute("SELECT 1").await.is_err());

    locker.batch_execute("ROLLBACK").await.unwrap();
    bystander.client.batch_execute("SELECT 1").await.unwrap();
    assert_eq!(s.proxy.sessions().len(), 1);
    assert_eq!(s.proxy.metrics().transfers.error_fatal, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_moves_lose_and_repeat_no_statement() {
    const MOVES: usize = 1000;
    let s = setup(2, None).await;
    let (c, id) = s.connect().await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let writer = async {
        let mut n = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            c.client
                .execute("INSERT INTO seq VALUES ($1)", &[&n])
                .await
                .unwrap();
        }
        n
    };
    let mover = async {
        let mut moved = 0;
        let mut failures = Vec::new();
        while moved < MOVES {
            let outcome = s.proxy.move_session(id, None).await.unwrap();
            match outcome.result {
                TransferResult::Success => moved += 1,
                other => failures.push(other),
            }
            tokio::task::yield_now().await;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        failures
    };
    let (written, failures) = tokio::join!(writer, mover);
    assert!(failures.is_empty(), "{failures:?}");
    assert!(written > 0);
    assert_eq!(s.seq_rows(), (1..=written).collect::<Vec<_>>());
    let metrics = s.proxy.metrics();
    assert_eq!(metrics.transfers.success, MOVES as u64);
    assert_eq!(metrics.transfers.attempted, MOVES as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_server_after_moves() {
    let s = setup(2, None).await;
    let (c, id) = s.connect().await;
    for _ in 0..3 {
        s.move_ok(id, None).await;
    }
    let cancel = c.client.cancel_token();
    let sleeper = async { c.client.batch_execute("SELECT pg_sleep(30)").await };
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel_query(NoTls).await.unwrap();
    };
    let started = std::time::Instant::now();
    let (result, ()) = tokio::join!(sleeper, canceller);
    assert_eq!(
        result.unwrap_err().code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(eventually(5, || s.proxy.metrics().cancels_forwarded == 1).await);
    c.client.batch_execute("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebalancer_drains_and_evens_out() {
    let policy = RebalanceConfig {
        interval: Duration::from_millis(100),
        max_moves_per_pass: 8,
    };
    let s = setup(2, Some(policy)).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(s.connect().await.0);
    }
    assert_eq!(s.proxy.metrics().sessions_per_backend, vec![2, 2]);

    s.proxy.set_draining(BackendId(0), true).unwrap();
    assert!(eventually(10, || s.proxy.metrics().sessions_per_backend == vec![0, 4]).await);
    for c in &clients {
        assert_eq!(server_port(&c.client).await, s.port_of(BackendId(1)));
    }
    // New clients avoid the draining backend too.
    let (late, _) = s.connect().await;
    assert_eq!(server_port(&late.client).await, s.port_of(BackendId(1)));

    s.proxy.set_draining(BackendId(0), false).unwrap();
    assert!(
        eventually(10, || {
            let counts = s.proxy.metrics().sessions_per_backend;
            counts.iter().sum::<usize>() == 5 && counts[0].abs_diff(counts[1]) <= 1
        })
        .await
    );
    for c in clients.iter().chain([&late]) {
        c.client.batch_execute("SELECT 1").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_works_through_the_proxy_while_it_moves() {
    let s = setup(2, None).await;
    let port = s.proxy.local_addr().port();
    let mut psql = s.clusters[0]
        .psql_command(port)
        .args(["-q", "-A", "-t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = "\\set before `echo unused`\n\
                  SET application_name = 'psql-through-weir';\n\
                  PREPARE greeting (text) AS SELECT 'hello ' || $1;\n\
                  SELECT 'before', current_setting('port');\n\
                  SELECT pg_sleep(1);\n\
                  SELECT 'after', current_setting('port'), current_setting('application_name');\n\
                  EXECUTE greeting('after the move');\n\
                  \\echo done\n";
    psql.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(eventually(10, || s.proxy.sessions().len() == 1).await);
    let id = s.proxy.sessions()[0].id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcome = s.proxy.move_session(id, None).await.unwrap();
    assert_success(&outcome.result);
    let output = tokio::task::spawn_blocking(move || psql.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ports: Vec<String> = [BackendId(0), BackendId(1)]
        .iter()
        .map(|&b| s.port_of(b).to_string())
        .collect();
    let first = &ports[0];
    let second = &ports[1];
    assert_eq!(
        stdout,
        format!("before|{first}\n\nafter|{second}|psql-through-weir\nhello after the move\ndone\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_login_timeout_while_a_real_one_gets_in() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let login_timeout = Duration::from_millis(500);
    let s = setup_with(1, |config| config.login_timeout = login_timeout).await;
    let addr = s.proxy.local_addr();
    let start = std::time::Instant::now();
    // One client says nothing; the other sends an SSLRequest and half a StartupMessage.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 40, 0, 3])
        .await
        .unwrap();
    // Meanwhile a real client logs in and works.
    let (conn, _) = s.connect().await;
    let one: i32 = conn.client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    for (client, answered) in [(&mut silent, &b""[..]), (&mut slow, &b"N"[..])] {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
            .await
            .expect("closed after the login timeout")
            .unwrap();
        assert_eq!(got, answered);
    }
    assert!(start.elapsed() >= login_timeout);
    assert_eq!(s.proxy.metrics().login_timeouts, 2);
    // The real client's session is not bound by the login timeout.
    let two: i32 = conn.client.query_one("SELECT 2", &[]).await.unwrap().get(0);
    assert_eq!(two, 2);
}

/// A client through the proxy that speaks pgwire itself, past its startup.
async fn raw_session(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;

    let mut body = 196_608u32.to_be_bytes().to_vec();
    for field in ["user", "postgres", "database", "postgres"] {
        body.extend_from_slice(field.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend(body);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&startup).await.unwrap();
    read_until_ready(&mut stream, 1).await;
    stream
}

/// A simple Query message.
fn query(sql: &str) -> Vec<u8> {
    let mut message = vec![b'Q'];
    message.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    message.extend_from_slice(sql.as_bytes());
    message.push(0);
    message
}

/// Read messages until `n` ReadyForQuery have come; panics on an ErrorResponse.
async fn read_until_ready(stream: &mut (impl tokio::io::AsyncRead + Unpin), n: usize) {
    use tokio::io::AsyncReadExt;

    let mut reader = tokio::io::BufReader::with_capacity(256 << 10, stream);
    let mut ready = 0;
    while ready < n {
        let kind = reader.read_u8().await.unwrap();
        let len = reader.read_u32().await.unwrap();
        assert_ne!(kind, b'E', "the server answered with an error");
        ready += usize::from(kind == b'Z');
        let skipped = tokio::io::copy(
            &mut (&mut reader).take(u64::from(len) - 4),
            &mut tokio::io::sink(),
        )
        .await
        .unwrap();
        assert_eq!(skipped, u64::from(len) - 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_results_is_held_to_the_buffer_bound() {
    use tokio::io::AsyncWriteExt;

    let s = setup(1, None).await;
    let bound = ProxyConfig::new(Vec::new()).max_buffered_per_direction as u64;
    let mut stalled = raw_session(s.proxy.local_addr()).await;
    // Queries for a megabyte each, sent for three seconds and never read.
    let flood = query("SELECT repeat('x', 1000000)").repeat(64);
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    let writer = tokio::spawn(async move {
        while tokio::time::timeout_at(until, stalled.write_all(&flood))
            .await
            .is_ok_and(|r| r.is_ok())
        {}
        stalled
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (conn, _) = s.connect().await;
    let one: i32 = conn.client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let _stalled = writer.await.unwrap();
    let metrics = s.proxy.metrics();
    let peak = metrics.peak_buffered_to_client;
    eprintln!(
        "peak buffered to the client {peak} B, to the server {} B, bound {bound} B",
        metrics.peak_buffered_to_server
    );
    assert!(peak >= bound / 2, "the client's results were held: {peak}");
    assert!(
        peak <= bound + (128 << 10),
        "{peak} bytes held, bound {bound}"
    );
    assert!(metrics.peak_buffered_to_server <= bound + (128 << 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_while_it_reads_gets_every_result() {
    use tokio::io::AsyncWriteExt;

    let s = setup(1, None).await;
    let stream = raw_session(s.proxy.local_addr()).await;
    let (mut rx, mut tx) = stream.into_split();
    // 40 MB of queries with 100 MB of results: the server stops reading while its results
    // wait, so a proxy that writes one direction without reading the other stalls for good.
    let n = 2_000;
    let sql = format!(
        "SELECT length('{}'), repeat('x', 50000)",
        "y".repeat(20_000)
    );
    let writer = tokio::spawn(async move {
        let batch = query(&sql).repeat(100);
        for _ in 0..n / 100 {
            tx.write_all(&batch).await.unwrap();
        }
        tx
    });
    tokio::time::timeout(Duration::from_secs(60), read_until_ready(&mut rx, n))
        .await
        .expect("every result arrives");
    drop(writer.await.unwrap());
}
