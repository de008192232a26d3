//! The flags of the `proxy` binary.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use weir::transfer::Dialect;

/// The usage text.
pub const USAGE: &str = "\
usage: proxy --backend HOST:PORT [--backend HOST:PORT ...] [options]

A PostgreSQL proxy that moves live sessions between backends.

options:
  --listen HOST:PORT     where clients connect (default 127.0.0.1:6432)
  --backend HOST:PORT    a PostgreSQL server; give it once per backend
  --dialect NAME         cockroachdb (default) or postgres (stock PostgreSQL with
                         weir's emulation SQL installed)
  --rebalance-ms N       run the rebalancer every N milliseconds
  --move-every-ms N      move every session to another backend every N milliseconds
  --max-idle-per-backend N
                         server connections that moved sessions left, kept per backend
                         for later moves (default 16, 0 = close them; postgres dialect)
  --login-timeout-s N    close a client that has not finished its startup N seconds
                         after connecting (default 60)
  --max-client-connections N
                         client connections open at once; one more is refused with
                         SQLSTATE 53300 (default 1000)
  --max-buffered-kib N   KiB a session holds for a peer that does not read before it
                         stops reading the other peer, per direction (default 1024)
  --stats-every-s N      print the proxy's metrics every N seconds (default 10, 0 = never)
  --quiet                log only warnings and errors
  --help                 print this text";

/// What the flags asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The backends, in order.
    pub backends: Vec<SocketAddr>,
    /// The transfer dialect.
    pub dialect: Dialect,
    /// The rebalancer's interval, if it runs.
    pub rebalance: Option<Duration>,
    /// How often every session is moved, if at all.
    pub move_every: Option<Duration>,
    /// How often the metrics are printed, if at all.
    pub stats_every: Option<Duration>,
    /// Server connections kept per backend for reuse.
    pub max_idle_per_backend: usize,
    /// How long a client has to finish its startup.
    pub login_timeout: Duration,
    /// Client connections open at once at most.
    pub max_client_connections: usize,
    /// Bytes a session holds for one peer at most before it stops reading the other.
    pub max_buffered_per_direction: usize,
    /// Log only warnings and errors.
    pub quiet: bool,
}

/// A bad command line, with a message that says which flag and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// `--help` was given: print the usage and exit successfully.
    Help,
    /// Anything else.
    Bad(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help => f.write_str(USAGE),
            CliError::Bad(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for CliError {}

/// Parse the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, CliError> {
    let mut options = Options {
        listen: "127.0.0.1:6432".parse().expect("a valid address"),
        backends: Vec::new(),
        dialect: Dialect::cockroachdb(),
        rebalance: None,
        move_every: None,
        stats_every: Some(Duration::from_secs(10)),
        max_idle_per_backend: 16,
        login_timeout: Duration::from_secs(60),
        max_client_connections: 1_000,
        max_buffered_per_direction: 1 << 20,
        quiet: false,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| CliError::Bad(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--help" | "-h" => return Err(CliError::Help),
            "--quiet" => options.quiet = true,
            "--listen" => options.listen = address(&flag, &value()?)?,
            "--backend" => {
                let v = value()?;
                options.backends.push(address(&flag, &v)?);
            }
            "--dialect" => {
                options.dialect = match value()?.as_str() {
                    "cockroachdb" => Dialect::cockroachdb(),
                    "postgres" => Dialect::postgres(),
                    other => {
                        return Err(CliError::Bad(format!(
                            "--dialect must be cockroachdb or postgres, not {other:?}"
                        )))
                    }
                }
            }
            "--rebalance-ms" => options.rebalance = every(&flag, &value()?, Duration::from_millis)?,
            "--move-every-ms" => {
                options.move_every = every(&flag, &value()?, Duration::from_millis)?
            }
            "--stats-every-s" => {
                options.stats_every = every(&flag, &value()?, Duration::from_secs)?
            }
            "--max-idle-per-backend" => {
                let v = value()?;
                options.max_idle_per_backend = v.parse().map_err(|_| {
                    CliError::Bad(format!("{flag} needs a whole number, not {v:?}"))
                })?;
            }
            "--login-timeout-s" => {
                options.login_timeout = Duration::from_secs(positive(&flag, &value()?)? as u64)
            }
            "--max-client-connections" => {
                options.max_client_connections = positive(&flag, &value()?)?
            }
            "--max-buffered-kib" => {
                options.max_buffered_per_direction =
                    positive(&flag, &value()?)?.saturating_mul(1 << 10)
            }
            other => return Err(CliError::Bad(format!("unknown flag {other:?}"))),
        }
    }
    if options.backends.is_empty() {
        return Err(CliError::Bad("give at least one --backend".into()));
    }
    Ok(options)
}

fn address(flag: &str, value: &str) -> Result<SocketAddr, CliError> {
    let bad = |why: String| CliError::Bad(format!("{flag} {value:?}: {why}"));
    value
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("the name has no address".into()))
}

/// A whole number above 0.
fn positive(flag: &str, value: &str) -> Result<usize, CliError> {
    match value.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(CliError::Bad(format!(
            "{flag} needs a whole number above 0, not {value:?}"
        ))),
    }
}

/// A period in whole units; 0 means never.
fn every(flag: &str, value: &str, unit: fn(u64) -> Duration) -> Result<Option<Duration>, CliError> {
    let n: u64 = value
        .parse()
        .map_err(|_| CliError::Bad(format!("{flag} needs a whole number, not {value:?}")))?;
    Ok((n > 0).then(|| unit(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn every_flag_is_read() {
        let o = parse(args(
            "--listen 127.0.0.1:7000 --backend 127.0.0.1:5432 --backend 127.0.0.1:5433 \
             --dialect postgres --rebalance-ms 500 --move-every-ms 100 --stats-every-s 0 --quiet \
             --max-idle-per-backend 3 --login-timeout-s 5 --max-client-connections 20 \
             --max-buffered-kib 256",
        ))
        .unwrap();
        assert_eq!(o.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(o.backends.len(), 2);
        assert_eq!(o.dialect, Dialect::postgres());
        assert_eq!(o.rebalance, Some(Duration::from_millis(500)));
        assert_eq!(o.move_every, Some(Duration::from_millis(100)));
        assert_eq!(o.stats_every, None);
        assert_eq!(o.max_idle_per_backend, 3);
        assert_eq!(o.login_timeout, Duration::from_secs(5));
        assert_eq!(o.max_client_connections, 20);
        assert_eq!(o.max_buffered_per_direction, 256 << 10);
        assert!(o.quiet);
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let bad = |s: &str| match parse(args(s)) {
            Err(CliError::Bad(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(""), "give at least one --backend");
        assert_eq!(bad("--backend"), "--backend needs a value");
        assert!(bad("--backend nowhere").starts_with("--backend \"nowhere\": "));
        assert_eq!(
            bad("--backend 127.0.0.1:1 --dialect mysql"),
            "--dialect must be cockroachdb or postgres, not \"mysql\""
        );
        assert_eq!(
            bad("--backend 127.0.0.1:1 --rebalance-ms soon"),
            "--rebalance-ms needs a whole number, not \"soon\""
        );
        assert_eq!(
            bad("--backend 127.0.0.1:1 --max-idle-per-backend -1"),
            "--max-idle-per-backend needs a whole number, not \"-1\""
        );
        assert_eq!(
            bad("--backend 127.0.0.1:1 --login-timeout-s 0"),
            "--login-timeout-s needs a whole number above 0, not \"0\""
        );
        assert_eq!(
            bad("--backend 127.0.0.1:1 --max-client-connections many"),
            "--max-client-connections needs a whole number above 0, not \"many\""
        );
        assert_eq!(bad("--frobnicate"), "unknown flag \"--frobnicate\"");
        assert_eq!(parse(args("--help")), Err(CliError::Help));
    }
}
