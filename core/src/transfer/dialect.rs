//! What the servers are asked during a transfer: the dialect.
//!
//! CockroachDB answers `SHOW TRANSFER STATE` and `crdb_internal.deserialize_session` natively.
//! Stock PostgreSQL plays the same part with the SQL functions in [`POSTGRES_EMULATION_SQL`].
//!
//! ```
//! use weir::transfer::Dialect;
//!
//! let crdb = Dialect::cockroachdb();
//! assert_eq!(crdb.state_query("k1"), "SHOW TRANSFER STATE WITH 'k1'");
//! let pg = Dialect::postgres();
//! assert_eq!(pg.token_param, "weir.session_revival_token");
//! assert_eq!(
//!     pg.started_server_query("c3RhdGU=", "dG9rZW4=").unwrap(),
//!     "SELECT weir.deserialize_session(decode('c3RhdGU=', 'base64'), 'dG9rZW4=')"
//! );
//! assert_eq!(crdb.started_server_query("c3RhdGU=", "dG9rZW4="), None);
//! // The machine carries protocol-level prepared statements for PostgreSQL; CockroachDB's
//! // session state carries them itself.
//! assert!(pg.replay_prepared_statements && !crdb.replay_prepared_statements);
//! assert!(weir::transfer::POSTGRES_EMULATION_SQL.contains("deserialize_session(state bytea)"));
//! assert!(weir::transfer::POSTGRES_EMULATION_SQL.contains("weir.carried_settings"));
//! ```

use alloc::string::String;

/// The SQL that lets stock PostgreSQL answer [`Dialect::postgres`]: a schema `weir` with
/// `show_transfer_state(key text) RETURNS TABLE(error, session_state_base64,
/// session_revival_token_base64, transfer_key)`, `deserialize_session(bytea) RETURNS boolean` and
/// the table `carried_settings(name text PRIMARY KEY)`. Install it in every database sessions
/// use, on every server.
///
/// What moves with a session:
///
/// - Every setting whose source is `session` (what `SET` changed), replayed with `set_config`.
/// - Custom placeholder settings (`SET myapp.tenant = 'acme'`) named in `weir.carried_settings`:
///   PostgreSQL leaves them out of `pg_settings`, so the operator lists the ones to carry
///   (`INSERT INTO weir.carried_settings VALUES ('myapp.tenant')`).
/// - Statements made with SQL `PREPARE`, replayed from their text.
///
/// Statements made with the extended protocol's Parse (tokio-postgres' `s0`, `s1`, ..., pgbench
/// `-M prepared`'s `P_0`, ...) are not the SQL's business: with this dialect
/// ([`Dialect::replay_prepared_statements`]) the machine keeps the client's Parse messages and
/// sends them to the new server after the deserialize query, so any statement Parse took moves,
/// utility statements such as `BEGIN` or `SET` included. Both kinds live in one namespace on
/// the new server, so Bind and `EXECUTE` find them. The unnamed statement and portals are not
/// carried.
///
/// What makes the state query answer with its `error` column instead (a recoverable failure: the
/// session stays on its server): an open transaction, open cursors, temporary tables, `LISTEN`,
/// advisory locks, and a SQL `PREPARE` whose recorded text holds a `;` before its end
/// (PostgreSQL records the whole query string, which may hold other statements). The file's
/// header has the details.
pub const POSTGRES_EMULATION_SQL: &str = include_str!("postgres_emulation.sql");

/// The columns the state query must return, in this order.
pub const STATE_COLUMNS: [&str; 4] = [
    "error",
    "session_state_base64",
    "session_revival_token_base64",
    "transfer_key",
];

/// The placeholder for the transfer key in [`Dialect::state_query_template`].
pub const KEY_PLACEHOLDER: &str = "{key}";
/// The placeholder for the base64 state in [`Dialect::deserialize_query_template`] and
/// [`Dialect::started_server_query_template`].
pub const STATE_PLACEHOLDER: &str = "{state}";
/// The placeholder for the revival token in [`Dialect::started_server_query_template`].
pub const TOKEN_PLACEHOLDER: &str = "{token}";

/// The queries, tags and names one kind of server uses for a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Dialect {
    /// The state query, with [`KEY_PLACEHOLDER`] where the transfer key goes.
    pub state_query_template: String,
    /// The CommandComplete tag that ends the state query's response.
    pub state_tag: String,
    /// The startup parameter that carries the revival token to the new server.
    pub token_param: String,
    /// The deserialize query, with [`STATE_PLACEHOLDER`] where the base64 state goes.
    pub deserialize_query_template: String,
    /// The name of the single column the deserialize query returns.
    pub deserialize_column: String,
    /// The CommandComplete tag that ends the deserialize query's response.
    pub deserialize_tag: String,
    /// The deserialize query for a server connection that is already started (a connection
    /// reused after a reset, see `Machine::handle_new_server_started`), with
    /// [`STATE_PLACEHOLDER`] and [`TOKEN_PLACEHOLDER`]: such a connection never sent a startup
    /// packet for this session, so the token travels in the query. It must answer like
    /// [`Dialect::deserialize_query_template`]. `None` where the server takes the token only
    /// at startup (CockroachDB).
    pub started_server_query_template: Option<String>,
    /// Whether the machine keeps the client's named prepared statements (its Parse messages)
    /// and creates them again on the new server, after the deserialize query. Off where the
    /// server's own session state carries them (CockroachDB): creating them twice would fail.
    pub replay_prepared_statements: bool,
}

impl Dialect {
    /// CockroachDB's own statements (sqlproxyccl).
    pub fn cockroachdb() -> Dialect {
        Dialect {
            state_query_template: "SHOW TRANSFER STATE WITH '{key}'".into(),
            state_tag: "SHOW TRANSFER STATE 1".into(),
            token_param: "crdb:session_revival_token_base64".into(),
            deserialize_query_template:
                "SELECT crdb_internal.deserialize_session(decode('{state}', 'base64'))".into(),
            deserialize_column: "crdb_internal.deserialize_session".into(),
            deserialize_tag: "SELECT 1".into(),
            started_server_query_template: None,
            replay_prepared_statements: false,
        }
    }

    /// Stock PostgreSQL with [`POSTGRES_EMULATION_SQL`] installed: the revival token travels as
    /// the custom startup setting `weir.session_revival_token` (or, to an already started
    /// server, as the deserialize query's second argument), and the new server must let the
    /// user in without a password (the token does not authenticate).
    pub fn postgres() -> Dialect {
        Dialect {
            state_query_template: "SELECT * FROM weir.show_transfer_state('{key}')".into(),
            state_tag: "SELECT 1".into(),
            token_param: "weir.session_revival_token".into(),
            deserialize_query_template:
                "SELECT weir.deserialize_session(decode('{state}', 'base64'))".into(),
            deserialize_column: "deserialize_session".into(),
            deserialize_tag: "SELECT 1".into(),
            started_server_query_template: Some(
                "SELECT weir.deserialize_session(decode('{state}', 'base64'), '{token}')".into(),
            ),
            replay_prepared_statements: true,
        }
    }

    /// The state query for `key`.
    pub fn state_query(&self, key: &str) -> String {
        self.state_query_template.replace(KEY_PLACEHOLDER, key)
    }

    /// The deserialize query for the base64 `state`.
    pub fn deserialize_query(&self, state: &str) -> String {
        self.deserialize_query_template
            .replace(STATE_PLACEHOLDER, state)
    }

    /// The deserialize query for an already started server, or `None` when the dialect has
    /// none.
    pub fn started_server_query(&self, state: &str, token: &str) -> Option<String> {
        let template = self.started_server_query_template.as_ref()?;
        Some(
            template
                .replace(STATE_PLACEHOLDER, state)
                .replace(TOKEN_PLACEHOLDER, token),
        )
    }
}

impl Default for Dialect {
    /// [`Dialect::cockroachdb`].
    fn default() -> Self {
        Dialect::cockroachdb()
    }
}
