//! `basis demo last-seat --servers N`: the last seat over HTTP, with N `basis serve`
//! processes on one database (PostgreSQL for the real thing). A hundred buyers, split across
//! the processes, ask for the one seat at the same moment; the conditional update in the
//! database lets exactly one of them have it, whichever process served it, and the other 99
//! hear "sold out" (409).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use basis_server::Config;
use basis_server::clock::Clock as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Concurrent buyers.
const BUYERS: usize = 100;
/// Accounts they sign in as (each sends `BUYERS / ACCOUNTS` requests at once).
const ACCOUNTS: usize = 10;
/// How long a process may take to start and become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A `basis serve` started by the demo; SIGTERM when dropped... by [`Spawned::stop`].
struct Spawned {
    child: Child,
    base: String,
}

impl Spawned {
    /// Starts `basis serve` on a free port, sharing `data_dir` (so one signing key) and the
    /// database, and returns once it logged its address.
    async fn start(data_dir: &Path, database_url: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the basis binary")?;
        let mut child = Command::new(exe)
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            // One public origin (the tokens' issuer) for all, as behind a load balancer.
            .args(["--base-url", "http://last-seat.demo"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("DATABASE_URL", database_url)
            .env("BASIS_RATE_LIMITS", "off")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start basis serve")?;
        let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
        let address = loop {
            let Some(line) = lines.next_line().await? else {
                bail!("a server exited before listening");
            };
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["message"] == "listening"
            {
                break event["address"].as_str().unwrap_or_default().to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            base: format!("http://{address}"),
        })
    }

    /// SIGTERM, then wait for the exit.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = self.child.wait().await;
    }
}

/// Polls `/readyz` until 200, for at most [`READY_WITHIN`].
async fn ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    let mut ticks = tokio::time::interval(Duration::from_millis(25));
    loop {
        ticks.tick().await;
        let answer = client.get(format!("{base}/readyz")).send().await;
        if answer.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{base} was not ready within {READY_WITHIN:?}");
        }
    }
}

/// Creates an account with `role` in `store`; returns (email, password).
async fn account(
    store: &basis_store::Store,
    role: &str,
    n: usize,
    run: u64,
) -> anyhow::Result<(String, String)> {
    let email = format!("demo-{run:x}-{role}-{n}@example.com");
    let password = format!("{:032x}", rand::random::<u128>());
    let hasher = basis_server::passwords::Passwords::default();
    let body = basis_server::accounts::users::NewUser {
        name: email.clone(),
        email: email.clone(),
        password: password.clone(),
    };
    let role = role.parse().map_err(anyhow::Error::msg)?;
    let now = basis_server::clock::SystemClock.now_ms();
    basis_server::accounts::users::insert_user(store, hasher.hasher(), now, body, role)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create a demo account: {e}"))?;
    Ok((email, password))
}

/// Signs in; returns the access token.
async fn login(
    client: &reqwest::Client,
    base: &str,
    (email, password): &(String, String),
) -> anyhow::Result<String> {
    let answer: Value = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?
        .json()
        .await?;
    answer["accessToken"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("sign-in failed: {answer}"))
}

/// Runs the demo with `servers` processes on `database_url`; returns the table, or an error
/// if anything but exactly one 201 and 99 × 409 came back.
pub async fn run(data_dir: &Path, database_url: &str, servers: usize) -> anyhow::Result<String> {
    let work = data_dir.join("demo-servers");
    std::fs::create_dir_all(&work)?;
    let config = Config {
        database_url: Some(database_url.to_owned()),
        ..Config::with_data_dir(&work)
    };
    let store = basis_server::open_store(&config).await?;
    let run = rand::random::<u64>();
    let admin = account(&store, "admin", 0, run).await?;
    let mut buyers = Vec::new();
    for n in 0..ACCOUNTS {
        buyers.push(account(&store, "user", n, run).await?);
    }
    store.close().await;

    let mut processes = Vec::new();
    for _ in 0..servers.max(1) {
        processes.push(Spawned::start(&work, database_url).await?);
    }
    let outcome = buy(&processes, &admin, &buyers).await;
    for process in processes {
        process.stop().await;
    }
    let (rows, seats_left) = outcome?;
    let engine = if database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let mut table = format!(
        "\nlast seat over HTTP on {engine}: {BUYERS} concurrent buyers split across {} `basis serve` processes, 1 seat\n\
         {:<24}{:>8}{:>8}{:>10}{:>8}\n",
        rows.len(),
        "server",
        "buyers",
        "201",
        "409 sold",
        "other"
    );
    let mut total = [0usize; 4];
    for (server, counts) in &rows {
        table.push_str(&format!(
            "{server:<24}{:>8}{:>8}{:>10}{:>8}\n",
            counts[0], counts[1], counts[2], counts[3]
        ));
        for (t, c) in total.iter_mut().zip(counts) {
            *t += c;
        }
    }
    table.push_str(&format!(
        "{:<24}{:>8}{:>8}{:>10}{:>8}\nseats left: {seats_left}\n",
        "total", total[0], total[1], total[2], total[3]
    ));
    if total[1] != 1 || total[2] != BUYERS - 1 || seats_left != 0 {
        bail!("expected one 201 and {} × 409:{table}", BUYERS - 1);
    }
    Ok(table)
}

/// Per server: [buyers, 201, 409, other]; and the seats left afterwards.
type Counts = Vec<(String, [usize; 4])>;

async fn buy(
    processes: &[Spawned],
    admin: &(String, String),
    buyers: &[(String, String)],
) -> anyhow::Result<(Counts, i64)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    for process in processes {
        ready(&client, &process.base).await?;
    }
    let first = &processes[0].base;
    let admin_token = login(&client, first, admin).await?;
    let mut tokens = Vec::new();
    for buyer in buyers {
        tokens.push(login(&client, first, buyer).await?);
    }
    let created = client
        .post(format!("{first}/events"))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "The last seat", "seats": 1}))
        .send()
        .await?;
    if created.status() != 201 {
        bail!("creating the event answered {}", created.status());
    }
    let event = created.json::<Value>().await?["id"]
        .as_i64()
        .context("an event id")?;

    // Every buyer's request is built and waiting before any is sent.
    let barrier = Arc::new(tokio::sync::Barrier::new(BUYERS));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..BUYERS {
        let server = i % processes.len();
        let request = client
            .post(format!(
                "{}/events/{event}/bookings",
                processes[server].base
            ))
            .bearer_auth(&tokens[i % tokens.len()]);
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let status = request.send().await.map(|r| r.status().as_u16()).ok();
            (server, status)
        });
    }
    let mut counts: Counts = processes
        .iter()
        .map(|p| (p.base.trim_start_matches("http://").to_owned(), [0; 4]))
        .collect();
    while let Some(done) = tasks.join_next().await {
        let (server, status) = done?;
        let row = &mut counts[server].1;
        row[0] += 1;
        match status {
            Some(201) => row[1] += 1,
            Some(409) => row[2] += 1,
            _ => row[3] += 1,
        }
    }
    let seats: Value = client
        .get(format!(
            "{}/events/{event}",
            processes[processes.len() - 1].base
        ))
        .bearer_auth(&admin_token)
        .send()
        .await?
        .json()
        .await?;
    let seats_left = seats["seatsLeft"].as_i64().context("seatsLeft")?;
    Ok((counts, seats_left))
}
