//! The ledger across real processes: read models that a SIGKILL cannot leave behind, and the
//! last seat sold through two `basis serve` processes on one PostgreSQL.
//! (The bank test is `bank.rs`.)

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

mod support;

use support::{
    Basis, access_token, basis, create_user, fresh_postgres_database, postgres_admin_url, ready,
};

const PASSWORD: &str = "seven quiet ledgers balance at dawn";

async fn call(
    client: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    url: String,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("a response");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn events_committed_before_a_sigkill_are_projected_after_the_restart(
    database_url: Option<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url.as_deref();
    let client = reqwest::Client::new();
    create_user(dir.path(), url, "root@example.com", "admin", PASSWORD).await;
    // No workers: the projection jobs are enqueued, and nobody runs them.
    // One public origin (the tokens' issuer) across the restart, as behind a load balancer.
    let origin = ["--base-url", "http://ledger.test"];
    let started = Instant::now();
    let server = Basis::serve(
        dir.path(),
        url,
        &[&origin[..], &["--workers", "off"]].concat(),
    )
    .await;
    let base = server.url("");
    ready(&client, &base, Duration::from_secs(30)).await;
    let token = access_token(&client, &base, "root@example.com", PASSWORD).await;
    let post = reqwest::Method::POST;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let body = json!({"currency": "EUR", "name": name});
        let (status, account) = call(
            &client,
            &token,
            post.clone(),
            format!("{base}/accounts"),
            None,
            Some(body),
        )
        .await;
        assert_eq!(status, 201, "{account}");
        ids.push(account["id"].as_i64().unwrap());
    }
    let (a, b) = (ids[0], ids[1]);
    let deposit = format!("{base}/accounts/{a}/deposits");
    let (status, _) = call(
        &client,
        &token,
        post.clone(),
        deposit,
        Some("d"),
        Some(json!({"amount": 1000})),
    )
    .await;
    assert_eq!(status, 201);
    for i in 0..30 {
        let body = json!({"from": a, "to": b, "amount": 1, "currency": "EUR"});
        let key = format!("t{i}");
        let (status, t) = call(
            &client,
            &token,
            post.clone(),
            format!("{base}/transfers"),
            Some(&key),
            Some(body),
        )
        .await;
        assert_eq!(status, 201, "{t}");
    }
    // Thirty-three writes; the queue coalesced the projection jobs to at most one per
    // 100 ms slice of the server's life (nothing runs them here, so none finished).
    let slices = started.elapsed().as_millis() / 100 + 2;
    let (_, queues) = call(
        &client,
        &token,
        reqwest::Method::GET,
        format!("{base}/admin/queues"),
        None,
        None,
    )
    .await;
    let ledger_queue = queues["queues"]
        .as_array()
        .and_then(|all| all.iter().find(|q| q["queue"] == "ledger"))
        .cloned()
        .unwrap_or_else(|| panic!("no ledger queue in {queues}"));
    let depth = ledger_queue["depth"].as_u64().unwrap();
    assert!(
        (1..=slices.min(32) as u64).contains(&depth),
        "{depth} projection jobs for 33 writes over {slices} slices"
    );
    let (_, projected) = call(
        &client,
        &token,
        reqwest::Method::GET,
        format!("{base}/accounts/{a}"),
        None,
        None,
    )
    .await;
    assert_eq!(
        projected["balance"], 0,
        "nothing is projected without a worker"
    );

    // Killed between the events' commit and their projection.
    let status = server.kill().await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let server = Basis::serve(dir.path(), url, &origin).await;
    let base = server.url("");
    ready(&client, &base, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    for (account, balance) in [(a, 970), (b, 30)] {
        loop {
            poll.tick().await;
            let (_, view) = call(
                &client,
                &token,
                reqwest::Method::GET,
                format!("{base}/accounts/{account}"),
                None,
                None,
            )
            .await;
            if view["balance"] == balance {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "account {account} is stuck at {view}"
            );
        }
    }
    // And the rebuilt read models equal the live ones.
    server.terminate().await;
    let rebuilt = basis(dir.path(), url)
        .args(["ledger", "rebuild"])
        .output()
        .await
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_sigkill_are_projected_after_the_restart_on_sqlite() {
    events_committed_before_a_sigkill_are_projected_after_the_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_sigkill_are_projected_after_the_restart_on_postgres() {
    let Some(admin) = postgres_admin_url() else {
        return;
    };
    events_committed_before_a_sigkill_are_projected_after_the_restart(Some(
        fresh_postgres_database(&admin).await,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_seat_through_two_servers_on_postgres_goes_to_exactly_one_buyer() {
    let Some(admin) = postgres_admin_url() else {
        return;
    };
    let database = fresh_postgres_database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let output = basis(dir.path(), Some(&database))
        .args(["demo", "last-seat", "--servers", "2"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let servers: Vec<&Vec<&str>> = rows
        .iter()
        .filter(|r| r.len() == 5 && r[0].starts_with("127.0.0.1:"))
        .collect();
    assert_eq!(servers.len(), 2, "{stdout}");
    for row in &servers {
        assert_eq!(
            row[1], "50",
            "each process served half the buyers: {stdout}"
        );
    }
    assert!(
        rows.contains(&vec!["total", "100", "1", "99", "0"]),
        "one 201, 99 sold out: {stdout}"
    );
    assert!(stdout.contains("seats left: 0"), "{stdout}");
}

/// `basis demo sharding` needs no database: it places a million ids by each scheme and
/// prints what adding a fifth database moves.
#[tokio::test]
async fn the_sharding_demo_shows_logical_shards_moving_a_fifth_and_modulo_most_keys() {
    let dir = tempfile::tempdir().unwrap();
    let output = basis(dir.path(), None)
        .args(["demo", "sharding"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // The "keys moved" column of a scheme's row, in percent.
    let moved = |scheme: &str| -> f64 {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(scheme))
            .unwrap_or_else(|| panic!("a row for {scheme}: {stdout}"));
        let cell = row
            .split_whitespace()
            .find(|cell| cell.ends_with('%') && !cell.contains('-'))
            .unwrap_or_else(|| panic!("a moved share in {row:?}"));
        cell.trim_end_matches('%').parse().unwrap()
    };
    let logical = moved("256 logical shards");
    assert!((19.0..21.0).contains(&logical), "{stdout}");
    assert!(moved("hash modulo") > 75.0, "{stdout}");
    let ring = moved("consistent hash");
    assert!((12.0..28.0).contains(&ring), "{stdout}");
    assert!(stdout.contains("1/5 = 20.0%"), "{stdout}");
    assert!(!dir.path().join("demo.db").exists(), "no database is made");
}
