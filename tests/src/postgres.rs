//! Throwaway PostgreSQL clusters for tests, with weir's transfer emulation installed.
//!
//! [`Cluster::start`] runs Debian's `postgresql` binaries: `initdb` into a fresh temporary
//! directory (`trust` authentication, superuser `postgres`), `postgres` on a free loopback port
//! with settings that trade durability for speed, then installs
//! [`weir::transfer::POSTGRES_EMULATION_SQL`] into the `postgres` database. Dropping the
//! [`Cluster`] stops the server and deletes the directory, also when the test panics.
//!
//! The binaries come from the highest `/usr/lib/postgresql/<version>/bin`, or from the directory
//! in the environment variable `WEIR_PG_BIN`. PostgreSQL refuses to run as root, so when the
//! tests run as root the server runs as the `postgres` system user, which the Debian package
//! creates.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = weir_tests::postgres::Cluster::start()?;
//! let client = cluster.connect().await?;
//! let row = client.query_one("SELECT 1 + 1", &[]).await?;
//! assert_eq!(row.get::<_, i32>(0), 2);
//! assert_eq!(cluster.psql("SELECT 40 + 2")?.trim(), "42");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The environment variable that names the directory holding `initdb`, `postgres` and `psql`.
pub const BIN_ENV: &str = "WEIR_PG_BIN";

/// How long [`Cluster::start`] waits for the server to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

const START_ATTEMPTS: usize = 5;

/// What went wrong while starting, using or stopping a cluster, said in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarnessError(pub String);

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

fn fail<T>(message: impl Into<String>) -> Result<T, HarnessError> {
    Err(HarnessError(message.into()))
}

/// The directory with PostgreSQL's binaries: `$WEIR_PG_BIN`, or else the highest
/// `/usr/lib/postgresql/<version>/bin` that holds `initdb`.
pub fn bin_dir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() {
            return fail(format!("{BIN_ENV}={} holds no initdb", dir.display()));
        }
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => fail(format!(
            "PostgreSQL not found: no /usr/lib/postgresql/<version>/bin/initdb and {BIN_ENV} is \
             not set (apt-get install postgresql)"
        )),
    }
}

/// Ends a child process: send each signal in turn, waiting up to its number of seconds for the
/// child to exit, then reap it.
pub fn stop_child(child: &mut Child, signals: &[(libc::c_int, u64)]) {
    let pid = child.id() as libc::pid_t;
    for &(signal, wait) in signals {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(wait);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.wait();
}

/// Whether [`bin_dir`] finds PostgreSQL, for tests that skip themselves without it.
pub fn available() -> bool {
    bin_dir().is_ok()
}

/// Connects with tokio-postgres and drives the connection on a spawned tokio task.
pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A running throwaway cluster. Dropping it stops the server and deletes its directory.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    port: u16,
    postmaster: Option<Child>,
    // Dropped after `Drop::drop` has stopped the server.
    dir: TempDir,
}

impl Cluster {
    /// Creates, starts and prepares a cluster (see the [module docs](self)).
    pub fn start() -> Result<Cluster, HarnessError> {
        let bin = bin_dir()?;
        let owner = server_user()?;
        // The postgres user must reach the directory, which it may not under root's $TMPDIR.
        let base = if owner.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("weir-pg-")
            .tempdir_in(&base)
            .map_err(|e| {
                HarnessError(format!(
                    "cannot create a directory in {}: {e}",
                    base.display()
                ))
            })?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| {
                HarnessError(format!(
                    "cannot chown {} to postgres: {e}",
                    dir.path().display()
                ))
            })?;
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        let output = as_server_user(&mut initdb, owner)
            .output()
            .map_err(|e| HarnessError(format!("cannot run {}/initdb: {e}", bin.display())))?;
        if !output.status.success() {
            return fail(format!(
                "initdb -D {} failed ({}):\n{}{}",
                data.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }

        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            match spawn_postmaster(&bin, dir.path(), port, owner)? {
                Ok(child) => {
                    let cluster = Cluster {
                        bin,
                        port,
                        postmaster: Some(child),
                        dir,
                    };
                    cluster.install_emulation()?;
                    return Ok(cluster);
                }
                // Someone else took the port between our probe and the server's bind.
                Err(log) if log.contains("could not bind") || log.contains("already in use") => {
                    last_error = Some(log);
                }
                Err(log) => return fail(format!("postgres did not start:\n{log}")),
            }
        }
        fail(format!(
            "postgres found no free port in {START_ATTEMPTS} attempts:\n{}",
            last_error.unwrap_or_default()
        ))
    }

    /// The loopback TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:`[`port`](Self::port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The cluster's temporary directory (data directory in `data/`, the server log in
    /// `postgres.log`, the Unix sockets at the top).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory of the PostgreSQL binaries in use (for `pgbench` and the like).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// A libpq connection string for user `postgres`, database `postgres`.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The tokio-postgres configuration of [`connection_string`](Self::connection_string).
    pub fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// Connects with [`config`](Self::config) (see [`connect`]).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        connect(&self.config()).await
    }

    /// `psql` for user `postgres`, database `postgres` on `127.0.0.1:port` (this cluster's port, or
    /// a proxy's), without `~/.psqlrc` and stopping at the first error; add arguments and stdin.
    pub fn psql_command(&self, port: u16) -> Command {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-d", "postgres", "-p"])
        .arg(port.to_string())
        .env_remove("PGOPTIONS")
        .env_remove("PGSERVICE");
        psql
    }

    /// Runs `script` with psql on this cluster and returns its output: rows only, unaligned
    /// (`-q -A -t`), so `SELECT 42` gives `"42\n"`. Fails with psql's stderr on any error.
    pub fn psql(&self, script: &str) -> Result<String, HarnessError> {
        let mut psql = self.psql_command(self.port);
        psql.args(["-q", "-A", "-t"]);
        run_with_stdin(psql, script)
    }

    /// Lets the transfer emulation carry these custom settings (rows of `weir.carried_settings`).
    pub fn carry_settings(&self, names: &[&str]) -> Result<(), HarnessError> {
        for name in names {
            let name = name.replace('\'', "''");
            self.psql(&format!(
                "INSERT INTO weir.carried_settings VALUES ('{name}') ON CONFLICT DO NOTHING;"
            ))?;
        }
        Ok(())
    }

    /// Ends the backend with this process id (`pg_terminate_backend`); false if there was none.
    pub fn terminate_backend(&self, pid: i32) -> Result<bool, HarnessError> {
        let out = self.psql(&format!("SELECT pg_terminate_backend({pid});"))?;
        Ok(out.trim() == "t")
    }

    /// Whether the server is running (not yet [stopped](Self::stop) and not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(
            self.postmaster.as_mut().map(Child::try_wait),
            Some(Ok(None))
        )
    }

    /// Stops the server now (immediate shutdown: every connection is cut), keeping the directory
    /// until the drop; connecting to [`port`](Self::port) then fails. Stopping twice is fine.
    pub fn stop(&mut self) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        // SIGQUIT is PostgreSQL's immediate shutdown; SIGKILL if it takes too long.
        stop_child(&mut child, &[(libc::SIGQUIT, 10), (libc::SIGKILL, 10)]);
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(self.dir.path(), lines)
    }

    fn install_emulation(&self) -> Result<(), HarnessError> {
        let mut psql = self.psql_command(self.port);
        psql.args(["-q"])
            .env("PGOPTIONS", "-c client_min_messages=warning");
        run_with_stdin(psql, weir::transfer::POSTGRES_EMULATION_SQL)
            .map(drop)
            .map_err(|e| HarnessError(format!("installing the transfer emulation failed: {e}")))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `Some((uid, gid))` of the `postgres` user when we run as root, `None` otherwise.
fn server_user() -> Result<Option<(u32, u32)>, HarnessError> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd")
        .map_err(|e| HarnessError(format!("cannot read /etc/passwd: {e}")))?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == "postgres" {
            if let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse()) {
                return Ok(Some((uid, gid)));
            }
        }
    }
    fail(
        "running as root, PostgreSQL needs the postgres system user, which does not exist \
          (apt-get install postgresql creates it)",
    )
}

fn as_server_user(command: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        // std drops the supplementary groups too when root sets a uid.
        command.uid(uid).gid(gid);
    }
    command
}

fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| HarnessError(format!("cannot find a free loopback port: {e}")))
}

/// Starts `postgres` and waits until it is ready. The outer error is ours; the inner one is the
/// server log of a server that exited.
fn spawn_postmaster(
    bin: &Path,
    dir: &Path,
    port: u16,
    owner: Option<(u32, u32)>,
) -> Result<Result<Child, String>, HarnessError> {
    let log_path = dir.join("postgres.log");
    let log = File::create(&log_path)
        .map_err(|e| HarnessError(format!("cannot create {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| HarnessError(format!("cannot dup the log: {e}")))?;
    let mut command = Command::new(bin.join("postgres"));
    command
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
        .args(["-c", "max_wal_size=1GB", "-c", "logging_collector=off"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let mut child = as_server_user(&mut command, owner)
        .spawn()
        .map_err(|e| HarnessError(format!("cannot run {}/postgres: {e}", bin.display())))?;

    // The postmaster writes "ready" as the last line of postmaster.pid once it accepts
    // connections; it exits at once when it cannot bind its port.
    let pid_file = dir.join("data").join("postmaster.pid");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(Err(format!(
                "postgres exited ({status}); its log ends:\n{}",
                log_tail(dir, 20)
            )));
        }
        let ready = fs::read_to_string(&pid_file)
            .map(|s| s.lines().nth(7).map(str::trim) == Some("ready"))
            .unwrap_or(false);
        if ready {
            return Ok(Ok(child));
        }
        if Instant::now() > deadline {
            // SAFETY: as in `Cluster::stop`.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
            return fail(format!(
                "postgres on port {port} did not accept connections within {START_TIMEOUT:?}; \
                 its log ends:\n{}",
                log_tail(dir, 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_tail(dir: &Path, lines: usize) -> String {
    let log = fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn run_with_stdin(mut command: Command, stdin: &str) -> Result<String, HarnessError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError(format!("cannot run {program}: {e}")))?;
    let mut input = child.stdin.take().expect("piped stdin");
    let script = stdin.to_owned();
    // Write from another thread so that a large output cannot block a large input.
    let writer = std::thread::spawn(move || input.write_all(script.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| HarnessError(format!("{program} failed: {e}")))?;
    let _ = writer.join();
    if !output.status.success() {
        return fail(format!(
            "{program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| HarnessError(format!("{program} output: {e}")))
}
