//! Transfers between two banks over HTTP with real `basis serve` processes: the home bank's
//! database and the other bank's are two databases of a private PostgreSQL cluster with
//! `max_prepared_transactions` above 0 (the shared server has it at 0, and is never
//! reconfigured by a test).

mod support;

use std::sync::Arc;
use std::time::Duration;

use basis_ledger::{Currency, Ledger, NewAccount, SystemClock};
use basis_store::{ConnectOptions, Store};
use basis_testkit::PrivatePostgres;
use serde_json::{Value, json};
use support::{Basis, access_token, basis, create_user, metric, ready};

const EMAIL: &str = "teller@bank.test";
const PASSWORD: &str = "a long enough password";

/// A ledger on `url` (the test's direct view of either bank).
async fn ledger(url: &str) -> Ledger {
    let store = Store::connect(url, &ConnectOptions::default())
        .await
        .expect("connect");
    let ledger = Ledger::new(store, Arc::new(SystemClock));
    ledger.install().await.expect("install");
    ledger
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

/// A signed-in teller with a funded account at the home bank, and an account at the other.
struct Setup {
    client: reqwest::Client,
    token: String,
    base: String,
    alice: i64,
    bob: i64,
}

async fn set_up(server: &Basis, remote: &Ledger) -> Setup {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = server.url("");
    ready(&client, &base, Duration::from_secs(30)).await;
    let token = access_token(&client, &base, EMAIL, PASSWORD).await;
    let opened: Value = client
        .post(format!("{base}/accounts"))
        .bearer_auth(&token)
        .json(&json!({"currency": "USD", "name": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alice = opened["id"].as_i64().expect("an account id");
    let deposit = client
        .post(format!("{base}/accounts/{alice}/deposits"))
        .bearer_auth(&token)
        .header("Idempotency-Key", format!("deposit-{alice}"))
        .json(&json!({"amount": 10_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(deposit.status(), 201);
    let bob = remote
        .open_account(&NewAccount {
            currency: usd(),
            name: Some("bob".into()),
            owner_id: Some("someone at the other bank".into()),
            allow_overdraft: false,
        })
        .await
        .expect("open at the other bank")
        .id;
    Setup {
        client,
        token,
        base,
        alice,
        bob,
    }
}

impl Setup {
    /// The JSON answer to a signed-in `GET` of `path` at the home bank.
    async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("a response")
            .json()
            .await
            .expect("a JSON answer")
    }

    async fn send(&self, to: &str, amount: i64, key: &str) -> (u16, Value) {
        self.move_money(json!(self.alice), json!(to), amount, key)
            .await
    }

    async fn move_money(&self, from: Value, to: Value, amount: i64, key: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/transfers", self.base))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", key)
            .json(&json!({"from": from, "to": to, "amount": amount, "currency": "USD"}))
            .send()
            .await
            .expect("a response");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Every account's balance of each bank sums to zero, and nothing is left prepared.
async fn assert_settled(home: &Ledger, remote: &Ledger) {
    for ledger in [home, remote] {
        let (sum, prepared): (i64, i64) = basis_store::on_pool!(ledger.store(), write, pool => {
            sqlx::query_as(
                "SELECT (SELECT COALESCE(SUM(balance), 0)::bigint FROM ledger_accounts), \
                        (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database())",
            )
            .fetch_one(pool)
            .await
        })
        .unwrap();
        assert_eq!(
            (sum, prepared),
            (0, 0),
            "each bank balances, nothing left prepared"
        );
    }
}

#[tokio::test]
async fn a_transfer_to_or_from_another_bank_commits_on_both_over_http_in_either_mode() {
    let Some(pg) = PrivatePostgres::start(10).await else {
        return;
    };
    let home_url = pg.create_database("home");
    let remote_url = pg.create_database("remote");
    let remote = ledger(&remote_url).await;
    let dir = tempfile::tempdir().unwrap();
    create_user(dir.path(), Some(&home_url), EMAIL, "admin", PASSWORD).await;
    let mut moved = 0;
    for mode in ["2pc", "saga"] {
        let flags = ["--ledger-remote-url", &remote_url, "--cross-ledger", mode];
        let server = Basis::serve(dir.path(), Some(&home_url), &flags).await;
        let s = set_up(&server, &remote).await;
        let (status, body) = s
            .send(&format!("remote:{}", s.bob), 2_500, &format!("{mode}-1"))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            (body["status"].as_str(), body["mode"].as_str()),
            (Some("committed"), Some(mode))
        );
        moved += 2_500 + 400;
        let local = body["localTransferId"].as_i64().expect("the local half");
        let half = s.get(&format!("/transfers/{local}")).await;
        assert_eq!(half["status"], "posted", "{half}");
        // Refusals: an unknown participant, an unknown remote account, too little money.
        let (status, body) = s.send("elsewhere:1", 1, &format!("{mode}-2")).await;
        assert_eq!(status, 422, "{body}");
        let (status, _) = s.send("remote:999999", 1, &format!("{mode}-3")).await;
        assert_eq!(status, 404);
        let (status, body) = s
            .send(
                &format!("remote:{}", s.bob),
                1_000_000,
                &format!("{mode}-4"),
            )
            .await;
        assert_eq!(status, 422, "{body}");

        // Money comes in: from the teller's own account at the other bank to Alice.
        let me = s.get("/auth/me").await;
        let carol = remote
            .open_account(&NewAccount {
                currency: usd(),
                name: Some("carol".into()),
                owner_id: Some(me["id"].as_str().expect("a user id").into()),
                allow_overdraft: false,
            })
            .await
            .expect("open at the other bank")
            .id;
        remote.deposit(carol, 1_000, &usd()).await.expect("deposit");
        let (status, body) = s
            .move_money(
                json!(format!("remote:{carol}")),
                json!(s.alice),
                400,
                &format!("{mode}-in-1"),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            (body["status"].as_str(), body["mode"].as_str()),
            (Some("committed"), Some(mode))
        );
        assert_eq!(body["from"], format!("remote:{carol}"), "{body}");
        assert_eq!(body["to"], s.alice.to_string(), "{body}");
        let credit = body["localTransferId"].as_i64().expect("the local half");
        let half = s.get(&format!("/transfers/{credit}")).await;
        assert_eq!(half["status"], "posted", "{half}");
        // Only the owner takes money out of an account of the other bank; both sides at
        // the other bank, or too little money there, are refused; nothing moves.
        let (status, body) = s
            .move_money(
                json!(format!("remote:{}", s.bob)),
                json!(s.alice),
                1,
                &format!("{mode}-in-2"),
            )
            .await;
        assert_eq!(status, 404, "{body}");
        let (status, body) = s
            .move_money(
                json!(format!("remote:{carol}")),
                json!(format!("remote:{}", s.bob)),
                1,
                &format!("{mode}-in-3"),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains("from"), "{body}");
        let (status, body) = s
            .move_money(
                json!(format!("remote:{carol}")),
                json!(s.alice),
                5_000,
                &format!("{mode}-in-4"),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        let carol = remote.account(carol).await.unwrap();
        assert_eq!((carol.balance, carol.pending_debits), (600, 0));

        let alice: Value = s
            .client
            .get(format!(
                "{}/accounts/{}?consistency=strong",
                s.base, s.alice
            ))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(alice["balance"], 10_000 - 2_500 + 400, "{alice}");
        assert_eq!(alice["pending"], 0, "{alice}");
        let bob = remote.account(s.bob).await.unwrap();
        assert_eq!(bob.balance, 2_500);
        // The gauges exist (set by the recovery at start) and show nothing left prepared.
        let page = s
            .client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for db in ["home", "remote"] {
            for series in [
                "ledger_prepared_transactions",
                "ledger_prepared_oldest_seconds",
            ] {
                let line = format!("{series}{{participant=\"{db}\"}} 0");
                assert!(page.contains(&line), "{line} on /metrics");
            }
        }
        let committed = metric(
            &s.client,
            &server.url("/metrics"),
            "ledger_cross_transfers_total",
            &[&format!("mode=\"{mode}\""), "outcome=\"committed\""],
        )
        .await;
        assert_eq!(committed, 2.0, "one transfer out, one in");
        assert!(server.terminate().await.success());
    }
    assert!(moved > 0);
    assert_settled(&ledger(&home_url).await, &remote).await;
}

#[tokio::test]
async fn serve_refuses_to_start_when_the_databases_cannot_prepare_transactions() {
    let Some(pg) = PrivatePostgres::start(0).await else {
        return;
    };
    let home_url = pg.create_database("home");
    let remote_url = pg.create_database("remote");
    let dir = tempfile::tempdir().unwrap();
    let output = basis(dir.path(), Some(&home_url))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ledger-remote-url",
            &remote_url,
        ])
        .output()
        .await
        .expect("the binary runs");
    assert!(!output.status.success(), "serve must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("max_prepared_transactions is 0 on the home database"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_transfer_to_another_bank_is_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    create_user(dir.path(), None, EMAIL, "admin", PASSWORD).await;
    let flags = [
        "--ledger-remote-url",
        "postgres://postgres@127.0.0.1:1/other",
    ];
    let server = Basis::serve(dir.path(), None, &flags).await;
    let client = reqwest::Client::new();
    let base = server.url("");
    ready(&client, &base, Duration::from_secs(30)).await;
    let token = &access_token(&client, &base, EMAIL, PASSWORD).await;
    let opened: Value = client
        .post(format!("{base}/accounts"))
        .bearer_auth(token)
        .json(&json!({"currency": "USD"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = client
        .post(format!("{base}/transfers"))
        .bearer_auth(token)
        .header("Idempotency-Key", "to-another-bank")
        .json(&json!({"from": opened["id"], "to": "remote:1", "amount": 1, "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert!(problem.to_string().contains("SQLite"), "{problem}");
}

#[tokio::test]
async fn a_server_killed_amid_transfers_to_another_bank_leaves_each_on_both_or_neither() {
    killed_amid_transfers("2pc").await;
}

/// The same in saga mode: the kill lands between the saga's steps (reservation made, credit
/// made, reservation not yet posted), and the restart resumes each from its step.
#[tokio::test]
async fn a_saga_killed_amid_transfers_to_another_bank_is_finished_or_compensated_on_restart() {
    killed_amid_transfers("saga").await;
}

async fn killed_amid_transfers(mode: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(pg) = PrivatePostgres::start(20).await else {
        return;
    };
    let home_url = pg.create_database("home");
    let remote_url = pg.create_database("remote");
    let remote = ledger(&remote_url).await;
    let home = ledger(&home_url).await;
    let dir = tempfile::tempdir().unwrap();
    create_user(dir.path(), Some(&home_url), EMAIL, "admin", PASSWORD).await;
    let flags = [
        "--ledger-remote-url",
        remote_url.as_str(),
        "--cross-ledger",
        mode,
        "--request-timeout-ms",
        "5000",
    ];
    let server = Basis::serve(dir.path(), Some(&home_url), &flags).await;
    let s = Arc::new(set_up(&server, &remote).await);
    let acked = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for c in 0..6 {
        let (s, acked) = (s.clone(), acked.clone());
        senders.spawn(async move {
            let mut keys = Vec::new();
            for n in 0.. {
                let key = format!("kill-{c}-{n}");
                match s.client
                    .post(format!("{}/transfers", s.base))
                    .bearer_auth(&s.token)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"from": s.alice, "to": format!("remote:{}", s.bob), "amount": 1, "currency": "USD"}))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 201 => {
                        acked.fetch_add(1, Ordering::SeqCst);
                        keys.push(key);
                    }
                    Ok(r) => panic!("unexpected {}", r.status()),
                    Err(_) => return keys, // the server is gone
                }
            }
            keys
        });
    }
    let busy = basis_testkit::eventually(Duration::from_secs(30), || {
        let acked = acked.clone();
        async move { acked.load(Ordering::SeqCst) >= 40 }
    })
    .await;
    assert!(busy, "transfers went through before the kill");
    let status = server.kill().await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let mut acked_keys = Vec::new();
    while let Some(keys) = senders.join_next().await {
        acked_keys.extend(keys.expect("a sender panicked"));
    }

    // The restart settles what the killed process left in doubt before it listens.
    let restarted = Basis::serve(dir.path(), Some(&home_url), &flags).await;
    ready(&s.client, &restarted.url(""), Duration::from_secs(30)).await;
    assert_settled(&home, &remote).await;
    let (committed, open): (i64, i64) = basis_store::on_pool!(home.store(), write, pool => {
        sqlx::query_as(
            "SELECT COALESCE(SUM(amount) FILTER (WHERE status = 'committed'), 0)::bigint, \
                    count(*) FILTER (WHERE status = 'started') FROM ledger_cross_transfers",
        )
        .fetch_one(pool)
        .await
    })
    .unwrap();
    assert_eq!(open, 0, "no transfer left undecided");
    let reserved: i64 = basis_store::on_pool!(home.store(), write, pool => {
        sqlx::query_scalar("SELECT count(*) FROM ledger_transfers WHERE status = 'pending'")
            .fetch_one(pool)
            .await
    })
    .unwrap();
    assert_eq!(reserved, 0, "no reservation left pending");
    let alice = home.account(s.alice).await.unwrap();
    let bob = remote.account(s.bob).await.unwrap();
    assert_eq!(
        bob.balance, committed,
        "the other bank received exactly the committed ones"
    );
    assert_eq!(
        alice.balance + bob.balance,
        10_000,
        "the customers' money is conserved"
    );
    assert!(
        committed >= acked_keys.len() as i64,
        "every acknowledged transfer committed"
    );
    for key in &acked_keys {
        let status: String = basis_store::on_pool!(home.store(), write, pool => {
            sqlx::query_scalar("SELECT status FROM ledger_cross_transfers WHERE request_key LIKE '%/' || $1")
                .bind(key)
                .fetch_one(pool)
                .await
        })
        .unwrap();
        assert_eq!(status, "committed", "{key}");
    }
    assert!(restarted.terminate().await.success());
}
