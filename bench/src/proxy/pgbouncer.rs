//! A throwaway PgBouncer in session mode in front of one server, stopped on drop.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use weir_tests::postgres::stop_child;

/// A running PgBouncer. Dropping it stops the process and deletes its directory.
pub struct PgBouncer {
    child: Option<Child>,
    port: u16,
    version: String,
    // Dropped after `Drop::drop` has stopped the process.
    dir: TempDir,
}

impl PgBouncer {
    /// Start `pgbouncer` listening on a free loopback port, pooling sessions to `server`
    /// (database `postgres`, user `postgres`, trust authentication). PgBouncer refuses to
    /// run as root, so as root it runs as the `postgres` system user.
    pub fn start(server: SocketAddr) -> Result<PgBouncer, String> {
        let version = version()?;
        let owner = postgres_user()?;
        let dir = tempfile::Builder::new()
            .prefix("weir-pgbouncer-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create a directory in /tmp: {e}"))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", dir.path().display()))?;
        }
        let users = dir.path().join("userlist.txt");
        fs::write(&users, "\"postgres\" \"\"\n").map_err(|e| format!("userlist: {e}"))?;
        let mut bouncer = PgBouncer {
            child: None,
            port: 0,
            version,
            dir,
        };
        let mut last = String::new();
        for _ in 0..5 {
            match bouncer.spawn(server, &users, owner) {
                Ok(()) => return Ok(bouncer),
                Err(e) => {
                    last = e;
                    bouncer.stop();
                }
            }
        }
        Err(format!("pgbouncer did not start: {last}"))
    }

    /// Start the process on a fresh port and wait until it listens.
    fn spawn(
        &mut self,
        server: SocketAddr,
        users: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<(), String> {
        self.port = free_port()?;
        let ini = self.dir.path().join("pgbouncer.ini");
        fs::write(&ini, config(server, self.port, users)).map_err(|e| format!("ini: {e}"))?;
        let log =
            File::create(self.dir.path().join("pgbouncer.log")).map_err(|e| format!("log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut command = Command::new("pgbouncer");
        command
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some((uid, gid)) = owner {
            command.uid(uid).gid(gid);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run pgbouncer: {e}"))?;
        self.child = Some(child);
        self.wait_ready()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `PgBouncer 1.18.0`, say.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err("pgbouncer is not running".to_owned());
            };
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("pgbouncer exited ({status}):\n{}", self.log()));
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pgbouncer is not listening after 10 s:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT is PgBouncer's "safe shutdown"; SIGKILL when it takes too long.
        stop_child(&mut child, &[(libc::SIGINT, 5), (libc::SIGKILL, 5)]);
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(server: SocketAddr, port: u16, users: &Path) -> String {
    format!(
        "[databases]\n\
         postgres = host={} port={} dbname=postgres\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {}\n\
         pool_mode = session\n\
         max_client_conn = 100\n\
         default_pool_size = 20\n\
         ignore_startup_parameters = extra_float_digits\n",
        server.ip(),
        server.port(),
        users.display()
    )
}

fn version() -> Result<String, String> {
    let output = Command::new("pgbouncer")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run pgbouncer (apt-get install pgbouncer): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().next().unwrap_or("PgBouncer").trim().to_owned())
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

/// `Some((uid, gid))` of the `postgres` user when we run as root, `None` otherwise.
fn postgres_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or_else(|| "running as root, PgBouncer needs the postgres system user".to_owned())
}
