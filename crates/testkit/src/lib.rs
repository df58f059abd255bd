//! Test support shared by the Basis crates (a dev-dependency only).
//!
//! - [`PrivateRedis`]: a `redis-server` of the test's own on a free port, for tests that stop
//!   and restart Redis without disturbing the shared instance other suites use.
//! - [`PrivatePostgres`]: a PostgreSQL cluster of the test's own (`initdb` into a temporary
//!   directory, a free port, settings of the test's choosing such as
//!   `max_prepared_transactions`), so nothing reconfigures the shared server; a crash-safe
//!   one can be crashed (immediate shutdown) and started again on the same data; a
//!   streaming replica of one is made with `pg_basebackup -R` on its own port.
//! - [`PrivateRabbit`]: a RabbitMQ node of the test's own (its own node name, ports and
//!   data directory), for tests that kill and restart the broker.
//! - [`eventually`]: polls a real condition within a bound, instead of sleeping and hoping.
//! - [`free_port`]: a port nothing listens on right now.
//! - [`mmdb`]: small MaxMind DB files mapping networks to countries.

pub mod mmdb;
mod rabbit;

pub use rabbit::PrivateRabbit;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `condition` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A local port that was free when asked (the listener is closed before returning).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}

/// A free local port below the kernel's ephemeral range, for a server that is stopped and
/// started again on the same port: while it is down, a port from [`free_port`] can be taken
/// as the source port of any outgoing connection, and the restart then fails.
pub fn stable_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(10_000).max(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let start = u64::from(std::process::id()) ^ u64::from(nanos);
    (0..u64::from(span))
        .map(|i| 10_000 + ((start.wrapping_mul(7919) + i * 104_729) % u64::from(span)) as u16)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free local port below the ephemeral range")
}

/// A private `redis-server` that keeps nothing on disk, killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    /// Starts `redis-server` on `port` and waits (at most 10 s) until it answers `PING`.
    /// `None` when `redis-server` is not installed; a server that starts but never answers
    /// fails the test.
    pub async fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self {
            child: Some(child),
            port,
        };
        let up = eventually(Duration::from_secs(10), || server.answers()).await;
        assert!(up, "private redis-server on port {port} answers PING");
        Some(server)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (to start it again on the same one after [`Self::stop`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server answers `PING` within half a second.
    pub async fn answers(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(Ok(mut conn)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.get_multiplexed_async_connection(),
        )
        .await
        else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped server again on its port (empty: it keeps nothing on disk).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is stopped first");
        let again = Self::start(self.port).await.expect("redis-server restarts");
        *self = again;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private PostgreSQL cluster (trust authentication, user `postgres`) in a temporary
/// directory on a free port, stopped and deleted when dropped. Tests that need settings the
/// shared server does not have (two-phase commit needs `max_prepared_transactions` above 0)
/// start one of these instead of reconfiguring the shared server.
#[derive(Debug)]
pub struct PrivatePostgres {
    child: Option<Child>,
    port: u16,
    /// `-c` settings beyond the common ones.
    settings: Vec<String>,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Initialises a cluster with `max_prepared_transactions` set as given, starts it and
    /// waits (at most 30 s) until it accepts connections. `None` (with one visible
    /// `skipped:` line) when `initdb` is not installed; a cluster that fails to start fails
    /// the test. Run as root, the server runs as the `postgres` user (PostgreSQL refuses
    /// root). Commits are acknowledged before their WAL is written (fast, and a crash of
    /// the server may lose the last ones): for tests that never crash it.
    pub async fn start(max_prepared_transactions: u32) -> Option<Self> {
        Self::launch(&[
            "synchronous_commit=off".to_owned(),
            format!("max_prepared_transactions={max_prepared_transactions}"),
        ])
        .await
    }

    /// A cluster whose acknowledged commits survive a crash of the server
    /// (`synchronous_commit=on`), for tests that [`Self::crash`] it. `fsync` stays off: the
    /// WAL reaches the kernel before a commit is acknowledged, and only the server process
    /// dies, never the machine.
    pub async fn crash_safe() -> Option<Self> {
        Self::launch(&["synchronous_commit=on".to_owned()]).await
    }

    async fn launch(settings: &[String]) -> Option<Self> {
        if Command::new("initdb").arg("--version").output().is_err() {
            println!("skipped: initdb is not installed, no private PostgreSQL");
            return None;
        }
        let (dir, root, data) = cluster_dir("basis-pg-");
        let status = as_postgres_if(root, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb into {} succeeds", data.display());
        let mut server = Self {
            child: None,
            port: stable_port(),
            settings: settings.to_vec(),
            dir,
        };
        server.start_again().await;
        Some(server)
    }

    /// Starts the (stopped) server on its data directory and port and waits (at most 30 s)
    /// until it accepts connections; after [`Self::crash`], it recovers from its WAL first.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is stopped first");
        let mut command = as_postgres_if(is_root(), "postgres");
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=100"]);
        for setting in &self.settings {
            command.arg("-c").arg(setting);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let up = eventually(Duration::from_secs(30), || async { self.ready() }).await;
        assert!(
            up,
            "private PostgreSQL on port {} accepts connections",
            self.port
        );
    }

    /// A streaming replica of this cluster (`pg_basebackup -R`, its own directory and
    /// port), started and accepting read-only connections. `None` (with one visible
    /// `skipped:` line) when `pg_basebackup` is not installed. Replay can be paused with
    /// [`Self::pause_replay`], and the replica stopped with
    /// [`Self::crash`] and started again with [`Self::start_again`].
    pub async fn replica(&self) -> Option<Self> {
        if Command::new("pg_basebackup")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("skipped: pg_basebackup is not installed, no private replica");
            return None;
        }
        let (dir, root, data) = cluster_dir("basis-pg-replica-");
        let status = as_postgres_if(root, "pg_basebackup")
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-X", "stream", "-R", "--no-sync"])
            .args(["-c", "fast"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_basebackup");
        assert!(
            status.success(),
            "pg_basebackup into {} succeeds",
            data.display()
        );
        let mut replica = Self {
            child: None,
            port: stable_port(),
            settings: vec!["hot_standby=on".to_owned()],
            dir,
        };
        replica.start_again().await;
        Some(replica)
    }

    /// Stops the server the way a crash would: SIGQUIT, an immediate shutdown in which the
    /// postmaster takes its backends with it and nothing is checkpointed (a SIGKILL would
    /// leave the backends to notice on their own).
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// The URL of database `name` on this cluster (`postgres` exists from the start).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let status = Command::new("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ])
            .status()
            .expect("run createdb");
        assert!(status.success(), "createdb {name}");
        self.url(name)
    }

    /// Runs `statement` with `psql` on database `postgres` and returns what it printed
    /// (unaligned, without headers), trimmed; panics when psql fails.
    pub async fn sql(&self, statement: &str) -> String {
        let output = tokio::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", statement])
            .output()
            .await
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql `{statement}` on port {}: {}",
            self.port,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The primary's current WAL insert position, in bytes: a replica that has replayed
    /// this far holds everything written so far.
    pub async fn wal_position(&self) -> u64 {
        let lsn = self
            .sql("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
            .await;
        lsn.parse().expect("a WAL position")
    }

    /// Pauses WAL replay on this replica: it keeps answering reads, with what it had.
    pub async fn pause_replay(&self) {
        self.sql("SELECT pg_wal_replay_pause()").await;
    }

    /// Resumes WAL replay on this replica.
    pub async fn resume_replay(&self) {
        self.sql("SELECT pg_wal_replay_resume()").await;
    }

    /// Whether the server accepts connections now.
    fn ready(&self) -> bool {
        Command::new("pg_isready")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.crash();
    }
}

/// A temporary directory for a cluster (owned by `postgres` when running as root), whether
/// the commands must run as `postgres`, and the data directory inside it to fill.
fn cluster_dir(prefix: &str) -> (tempfile::TempDir, bool, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temporary directory");
    let root = is_root();
    if root {
        chown_postgres(dir.path());
    }
    let data = dir.path().join("data");
    (dir, root, data)
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Hands `dir` to the `postgres` user.
fn chown_postgres(dir: &Path) {
    let status = Command::new("chown")
        .arg("postgres:")
        .arg(dir)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown postgres {}", dir.display());
}

/// `program`, run as the `postgres` user when `root` (exec'd in place by `setpriv`, so the
/// child's pid is the program's own and signals reach it).
fn as_postgres_if(root: bool, program: &str) -> Command {
    if root {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--reset-env",
            "--",
            program,
        ]);
        command
    } else {
        Command::new(program)
    }
}
