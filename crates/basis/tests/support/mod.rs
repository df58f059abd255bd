//! Running the real `basis` binary in tests: commands with a clean environment, `serve`
//! and `worker` processes, a browser-like client and fresh PostgreSQL databases.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use sqlx::Connection as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

/// `basis` with logs as JSON, rate limits off and none of the developer's own settings:
/// the data dir and database are the test's. `BASIS_TEST_RUST_LOG` overrides the log filter
/// (default `info`).
pub fn basis(data_dir: &Path, database_url: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_basis"));
    command
        .args(["--log-format", "json"])
        .env("BASIS_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("BASIS_QUEUE_URL")
        .env_remove("BASIS_WORKERS")
        .env_remove("BASIS_SMTP_URL")
        .env("BASIS_RATE_LIMITS", "off")
        .env(
            "RUST_LOG",
            std::env::var("BASIS_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .kill_on_drop(true);
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command
}

/// A running `basis serve` or `basis worker`, with the address it listens on, if any.
pub struct Basis {
    child: Child,
    address: Option<String>,
    /// The log lines after the `listening` one, for processes started by `listening`.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Basis {
    /// `basis serve` on a free port, clicks flushed every 200 ms, once it logs its address.
    pub async fn serve(data_dir: &Path, database_url: Option<&str>, extra: &[&str]) -> Self {
        let mut command = basis(data_dir, database_url);
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--click-flush-ms",
                "200",
            ])
            .args(extra);
        Self::listening(command).await
    }

    /// `basis worker`.
    pub fn worker(data_dir: &Path, database_url: Option<&str>) -> Self {
        let child = basis(data_dir, database_url)
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        Self {
            child,
            address: None,
            log: Default::default(),
        }
    }

    /// `basis worker` with its operations port on a free port, once it logs the address.
    pub async fn worker_with_ops(data_dir: &Path, database_url: Option<&str>) -> Self {
        let mut command = basis(data_dir, database_url);
        command.args(["worker", "--ops-listen", "127.0.0.1:0"]);
        Self::listening(command).await
    }

    /// `basis gateway` on a free port with these flags, once it logs its address.
    pub async fn gateway(data_dir: &Path, flags: &[&str]) -> Self {
        let mut command = basis(data_dir, None);
        command
            .args(["gateway", "--listen", "127.0.0.1:0"])
            .args(flags);
        Self::listening(command).await
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("a running process")
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`…) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// The address it listens on.
    pub fn address(&self) -> &str {
        self.address.as_deref().expect("a process that listens")
    }

    /// Starts `command` (a `serve`, or a `worker` with `--ops-listen`, built by [`basis`])
    /// and waits for its `listening` log line.
    pub async fn listening(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let address = loop {
            let line = lines
                .next_line()
                .await
                .expect("readable stderr")
                .expect("the process logs its address before anything else ends");
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["message"] == "listening" {
                break event["address"]
                    .as_str()
                    .expect("an address field")
                    .to_owned();
            }
        };
        // Keep draining the log so the process never blocks on a full pipe. With
        // BASIS_TEST_LOG_DIR set, every process's lines also go to `<dir>/<pid>.log`, to read
        // after a long drill fails.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        let mut file = std::env::var_os("BASIS_TEST_LOG_DIR").and_then(|dir| {
            let path = Path::new(&dir).join(format!("{}.log", child.id().unwrap_or(0)));
            std::fs::File::create(path).ok()
        });
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(file) = file.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                kept.lock().expect("log lock").push(line);
            }
        });
        Self {
            child,
            address: Some(address),
            log,
        }
    }

    /// The log lines written so far after the `listening` one (JSON, one event a line).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// The URL of `path` on this process.
    pub fn url(&self, path: &str) -> String {
        let address = self.address.as_deref().expect("a process that listens");
        format!("http://{address}{path}")
    }

    /// Sends SIGKILL (no chance to finish anything) and waits for the process to be gone.
    pub async fn kill(mut self) -> std::process::ExitStatus {
        self.signal("KILL");
        self.child.wait().await.expect("the process ends")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("a running process").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        self.child.wait().await.expect("the process ends")
    }
}

/// Polls `GET /readyz` on `base` (`http://host:port`) until it answers 200, for at most
/// `within`; panics after that.
pub async fn ready(client: &reqwest::Client, base: &str, within: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(25));
    loop {
        ticks.tick().await;
        let answer = client.get(format!("{base}/readyz")).send().await;
        if answer.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{base} was not ready within {within:?}"
        );
    }
}

/// Creates an account with `role` through `basis admin create-user` (password on stdin);
/// returns its id.
pub async fn create_user(
    data_dir: &Path,
    database_url: Option<&str>,
    email: &str,
    role: &str,
    password: &str,
) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut child = basis(data_dir, database_url)
        .args(["admin", "create-user", "--email", email, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .await
        .expect("write the password");
    drop(stdin);
    let output = child.wait_with_output().await.expect("the command ends");
    assert!(
        output.status.success(),
        "create-user failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// An HTTP client that looks like a browser (so clicks count as human) and never follows
/// redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(BROWSER)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// Signs in at `base` and answers the access token.
pub async fn access_token(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> String {
    try_access_token(client, base, email, password)
        .await
        .expect("a sign-in answered with an access token")
}

/// [`access_token`], or `None` when the sign-in got no token (the server, or a dependency
/// of it, down).
pub async fn try_access_token(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> Option<String> {
    let login: Value = client
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    login["accessToken"].as_str().map(str::to_owned)
}

/// Signs up an account over HTTP (`POST /users`), asserting 201.
pub async fn sign_up(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
    name: &str,
) {
    let response = client
        .post(format!("{base}/users"))
        .json(&serde_json::json!({"email": email, "password": password, "name": name}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 201, "signing up {email}");
}

/// `method url` with a bearer token, an optional `Idempotency-Key` and a JSON body; answers
/// the status and the body.
pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(token).json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET url` as JSON, whatever the status.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("a response");
    response.json().await.expect("a JSON body")
}

/// The value of the Prometheus series `name` whose labels include every one of `labels`
/// (`key="value"` pairs) on `server`'s `/metrics`, or 0 when it has none yet.
pub async fn metric(
    client: &reqwest::Client,
    metrics_url: &str,
    name: &str,
    labels: &[&str],
) -> f64 {
    let text = client
        .get(metrics_url)
        .send()
        .await
        .expect("a response")
        .text()
        .await
        .expect("a text body");
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().expect("a number"))
}

/// The PostgreSQL server to test against, or `None` after one visible `skipped:` line.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("BASIS_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: BASIS_TEST_POSTGRES_URL is not set"
            );
            None
        }
    }
}

/// The URL of a new, empty database on that server.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    let name = format!("basis_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a URL with a database path");
    format!("{base}/{name}")
}
