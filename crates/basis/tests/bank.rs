//! The bank test in the Jepsen style, over HTTP against real `basis serve` processes: clients
//! move money at random between a few accounts and read all balances at once, while one
//! server is killed with SIGKILL and restarted. A checker then proves that
//!
//! - every full read summed to the money deposited, and no account without overdraft was
//!   ever read below zero;
//! - every acknowledged transfer is in the stored entry lines exactly once (one debit on its
//!   `from`, one credit on its `to`), no line belongs to a transfer nobody was told about,
//!   and each final balance is what the acknowledged transfers make of the deposits;
//! - the read models (projections) catch up to the write side after the kill.
//!
//! A request in flight at the kill has an unknown outcome; the client resolves it the way a
//! real one would, by sending it again with the same `Idempotency-Key` (to whichever server
//! is alive) until it gets a definite answer: 201 (applied once) or 422 (refused, nothing
//! changed).
//!
//! `cargo test` runs a short form (a few seconds per engine). `scripts/bank-test` runs the
//! long one through the same code: `BASIS_BANK_SECONDS` (default 3), `BASIS_BANK_CLIENTS`
//! (default 10), `BASIS_BANK_ACCOUNTS` (default 10).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::Rng as _;
use serde_json::{Value, json};
use tokio::time::Instant;

mod support;

use support::{
    Basis, access_token, create_user, fresh_postgres_database, postgres_admin_url, ready,
};

const PASSWORD: &str = "seven quiet ledgers balance at dawn";
const EMAIL: &str = "bank@example.com";
/// What each account starts with.
const DEPOSIT: i64 = 1_000;
/// Requests may run this long; a claim twice as old is taken over by a retry.
const REQUEST_TIMEOUT_MS: &str = "2000";
/// How long an unknown outcome may take to resolve (covers the restart and the claim lease).
const RESOLVE_WITHIN: Duration = Duration::from_secs(60);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The servers' base URLs; `None` while one is down.
#[derive(Clone, Default)]
struct Servers(Arc<RwLock<Vec<Option<String>>>>);

impl Servers {
    /// A live server, starting the search at `hint`.
    fn pick(&self, hint: usize) -> Option<String> {
        let all = self.0.read().unwrap();
        (0..all.len()).find_map(|i| all[(hint + i) % all.len()].clone())
    }

    fn set(&self, index: usize, base: Option<String>) {
        self.0.write().unwrap()[index] = base;
    }
}

/// What a transfer request finally got.
#[derive(Debug, Clone)]
struct Acked {
    key: String,
    transfer: i64,
    from: i64,
    to: i64,
    amount: i64,
}

/// Everything the clients saw, for the checker.
#[derive(Default)]
struct History {
    acked: Vec<Acked>,
    refused: usize,
    /// Requests whose first attempt got no definite answer (resolved by retrying).
    unknown: usize,
    reads: usize,
    /// Broken promises seen by a read.
    violations: Vec<String>,
}

struct Bank {
    client: reqwest::Client,
    token: String,
    servers: Servers,
    accounts: Vec<i64>,
    overdraft: Vec<bool>,
    total: i64,
    history: Mutex<History>,
}

impl Bank {
    /// `POST path` with `body` and `key` until a definite answer: `(201, body)` or `(422, _)`.
    /// Connection errors, 5xx and 409 (the key's first request is still unfinished) are
    /// retried on any live server. Returns the answer and whether an attempt was lost.
    async fn post_once(
        &self,
        hint: usize,
        path: &str,
        key: &str,
        body: &Value,
    ) -> (u16, Value, bool) {
        let deadline = Instant::now() + RESOLVE_WITHIN;
        let mut lost = false;
        let mut hint = hint;
        let mut pause = tokio::time::interval(Duration::from_millis(20));
        let mut last = String::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "{key}: no definite answer within {RESOLVE_WITHIN:?}; the last was {last}"
            );
            let Some(base) = self.servers.pick(hint) else {
                pause.tick().await;
                continue;
            };
            let sent = self
                .client
                .post(format!("{base}{path}"))
                .bearer_auth(&self.token)
                .header("idempotency-key", key)
                .json(body)
                .send()
                .await;
            match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    last = format!("{status} {answer}");
                    match status {
                        201 | 422 => return (status, answer, lost),
                        409 => {}
                        _ => lost = true,
                    }
                }
                Err(err) => {
                    last = err.to_string();
                    lost = true;
                    hint += 1;
                }
            }
            pause.tick().await;
        }
    }

    /// One random transfer, resolved.
    async fn transfer(&self, client: usize, n: usize) {
        let (from, to, amount) = {
            let mut rng = rand::rng();
            let from = rng.random_range(0..self.accounts.len());
            let to = (from + rng.random_range(1..self.accounts.len())) % self.accounts.len();
            (
                self.accounts[from],
                self.accounts[to],
                rng.random_range(1..=400),
            )
        };
        let key = format!("c{client}-{n}");
        let body =
            json!({"from": from, "to": to, "amount": amount, "currency": "USD", "reference": key});
        let (status, answer, lost) = self.post_once(client, "/transfers", &key, &body).await;
        let mut history = self.history.lock().unwrap();
        history.unknown += usize::from(lost);
        if status == 201 {
            assert_eq!(answer["amount"], amount, "{key}: {answer}");
            assert_eq!(
                (answer["from"].as_i64(), answer["to"].as_i64()),
                (Some(from), Some(to))
            );
            history.acked.push(Acked {
                key,
                transfer: answer["id"].as_i64().expect("a transfer id"),
                from,
                to,
                amount,
            });
        } else {
            history.refused += 1;
        }
    }

    /// All balances in one request (one snapshot of the write side), checked.
    async fn full_read(&self, client: usize) {
        let Some(base) = self.servers.pick(client) else {
            return;
        };
        let Ok(response) = self
            .client
            .get(format!("{base}/accounts?limit=100"))
            .bearer_auth(&self.token)
            .send()
            .await
        else {
            return;
        };
        if response.status() != 200 {
            return;
        }
        let Ok(page) = response.json::<Value>().await else {
            return;
        };
        let balances = balances_of(&page);
        let mut history = self.history.lock().unwrap();
        history.reads += 1;
        let sum: i64 = balances.values().sum();
        if sum != self.total || balances.len() != self.accounts.len() {
            history.violations.push(format!(
                "a read summed to {sum}, not {}: {balances:?}",
                self.total
            ));
        }
        for (i, id) in self.accounts.iter().enumerate() {
            if !self.overdraft[i] && balances.get(id).is_some_and(|b| *b < 0) {
                history
                    .violations
                    .push(format!("account {id} read negative: {balances:?}"));
            }
        }
    }

    /// Every stored entry line of `account` (write side), paged: (transfer, side, amount).
    async fn entries(&self, base: &str, account: i64) -> Vec<(i64, String, i64)> {
        let mut lines = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/accounts/{account}/entries?limit=100");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = self
                .client
                .get(url)
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for item in page["items"].as_array().expect("items") {
                lines.push((
                    item["transferId"].as_i64().unwrap(),
                    item["side"].as_str().unwrap().to_owned(),
                    item["amount"].as_i64().unwrap(),
                ));
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return lines,
            }
        }
    }
}

/// Account id → balance, from a page of `GET /accounts`.
fn balances_of(page: &Value) -> BTreeMap<i64, i64> {
    page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|a| Some((a["id"].as_i64()?, a["balance"].as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the bank test with `servers` processes on `database_url` (SQLite when `None`).
async fn bank_test(database_url: Option<String>, server_count: usize) {
    let seconds = setting("BASIS_BANK_SECONDS", 3);
    let clients = setting("BASIS_BANK_CLIENTS", 10) as usize;
    let account_count = setting("BASIS_BANK_ACCOUNTS", 10).max(2) as usize;
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let url = database_url.as_deref();
    // One public origin for every process (token issuer), as behind a load balancer.
    let flags = [
        "--request-timeout-ms",
        REQUEST_TIMEOUT_MS,
        "--base-url",
        "http://bank.test",
    ];
    create_user(dir.path(), url, EMAIL, "admin", PASSWORD).await;
    // One data directory: the processes share the development signing key, so a token
    // from one is good at the other, as behind a load balancer.
    let mut processes = Vec::new();
    for _ in 0..server_count {
        processes.push(Some(Basis::serve(dir.path(), url, &flags).await));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let servers = Servers::default();
    for process in &processes {
        let base = process.as_ref().unwrap().url("");
        ready(&client, &base, Duration::from_secs(30)).await;
        servers.0.write().unwrap().push(Some(base));
    }
    let base = servers.pick(0).unwrap();
    let token = access_token(&client, &base, EMAIL, PASSWORD).await;

    let mut bank = Bank {
        client: client.clone(),
        token,
        servers: servers.clone(),
        accounts: Vec::new(),
        overdraft: Vec::new(),
        total: 0,
        history: Mutex::new(History::default()),
    };
    let mut deposits = Vec::new();
    for i in 0..account_count {
        // Every fifth account may go below zero; the others never may.
        let overdraft = i % 5 == 4;
        let opened = client
            .post(format!("{base}/accounts"))
            .bearer_auth(&bank.token)
            .json(&json!({"currency": "USD", "name": format!("bank {i}"), "allowOverdraft": overdraft}))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), 201);
        let id = opened.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap();
        let (status, deposit, _) = bank
            .post_once(
                0,
                &format!("/accounts/{id}/deposits"),
                &format!("deposit-{id}"),
                &json!({"amount": DEPOSIT}),
            )
            .await;
        assert_eq!(status, 201, "{deposit}");
        deposits.push(deposit["id"].as_i64().unwrap());
        bank.accounts.push(id);
        bank.overdraft.push(overdraft);
        bank.total += DEPOSIT;
    }
    let bank = Arc::new(bank);

    eprintln!("set up in {:?}", began.elapsed());
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let bank = bank.clone();
        tasks.spawn(async move {
            let mut n = 0;
            while Instant::now() < end {
                if rand::rng().random_bool(0.8) {
                    bank.transfer(c, n).await;
                    n += 1;
                } else {
                    bank.full_read(c).await;
                }
            }
        });
    }

    // Mid-run: SIGKILL the first server, then start it again on the same data.
    tokio::time::sleep_until(started + Duration::from_millis(seconds * 500)).await;
    let victim = processes[0].take().unwrap();
    servers.set(0, None);
    let status = victim.kill().await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the server died of SIGKILL"
    );
    let transfers_at_kill = bank.history.lock().unwrap().acked.len();
    let restarted = Basis::serve(dir.path(), url, &flags).await;
    let restarted_base = restarted.url("");
    ready(&client, &restarted_base, Duration::from_secs(30)).await;
    servers.set(0, Some(restarted_base.clone()));
    processes[0] = Some(restarted);

    while let Some(done) = tasks.join_next().await {
        done.expect("a client panicked");
    }
    eprintln!("clients done after {:?}", started.elapsed());
    let history = std::mem::take(&mut *bank.history.lock().unwrap());
    eprintln!(
        "bank test on {} with {server_count} server(s), {clients} clients, {seconds} s: \
         {} transfers acknowledged ({transfers_at_kill} before the kill), {} refused, \
         {} with an unknown first outcome resolved by retrying, {} full reads",
        if url.is_some() { "postgres" } else { "sqlite" },
        history.acked.len(),
        history.refused,
        history.unknown,
        history.reads,
    );

    // 1. Every full read summed to the total; nobody without overdraft went negative.
    assert!(history.reads > 0, "the clients read the balances");
    assert!(history.violations.is_empty(), "{:#?}", history.violations);
    assert!(!history.acked.is_empty(), "money moved");

    // 2. Each acknowledged transfer is one debit and one credit line; nothing else moved.
    let base = restarted_base;
    let mut lines: HashMap<i64, Vec<(i64, String, i64)>> = HashMap::new();
    for &account in &bank.accounts {
        for (transfer, side, amount) in bank.entries(&base, account).await {
            lines
                .entry(transfer)
                .or_default()
                .push((account, side, amount));
        }
    }
    for deposit in &deposits {
        lines.remove(deposit).expect("the deposit's credit line");
    }
    let mut expected: BTreeMap<i64, i64> = bank.accounts.iter().map(|a| (*a, DEPOSIT)).collect();
    let mut seen = HashMap::new();
    for t in &history.acked {
        if let Some(other) = seen.insert(t.transfer, &t.key) {
            panic!(
                "{} and {other} were both answered with transfer {}",
                t.key, t.transfer
            );
        }
        let mut got = lines.remove(&t.transfer).unwrap_or_default();
        got.sort();
        let mut want = vec![
            (t.from, "debit".to_owned(), t.amount),
            (t.to, "credit".to_owned(), t.amount),
        ];
        want.sort();
        assert_eq!(
            got, want,
            "{} (transfer {}) is stored exactly once",
            t.key, t.transfer
        );
        *expected.get_mut(&t.from).unwrap() -= t.amount;
        *expected.get_mut(&t.to).unwrap() += t.amount;
    }
    assert!(
        lines.is_empty(),
        "lines of transfers nobody acknowledged: {lines:?}"
    );

    // 3. The final balances (write side) are what the acknowledged transfers made.
    let page: Value = client
        .get(format!("{base}/accounts?limit=100"))
        .bearer_auth(&bank.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(balances_of(&page), expected, "final balances");

    // 4. The read models catch up, though a server died between commits and projections.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    for (&account, &balance) in &expected {
        loop {
            poll.tick().await;
            let view: Value = client
                .get(format!("{base}/accounts/{account}"))
                .bearer_auth(&bank.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if view["balance"] == balance {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "account {account}'s read model is stuck at {view}"
            );
        }
    }
    eprintln!("checked after {:?}", started.elapsed());
    for process in processes.into_iter().flatten() {
        process.terminate().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_over_http_on_sqlite_survives_a_sigkill() {
    bank_test(None, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_over_http_on_postgres_with_two_servers_survives_a_sigkill() {
    let Some(admin) = postgres_admin_url() else {
        return;
    };
    bank_test(Some(fresh_postgres_database(&admin).await), 2).await;
}
