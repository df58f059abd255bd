//! Tests of the real binary as an operator runs it: start-up failures (a bad database or
//! cluster URL), a SIGTERM under load, and two processes sharing one PostgreSQL database.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::{Value, json};
use tokio::process::Command;

mod support;

use support::{Basis, client, fresh_postgres_database, get_json, metric, postgres_admin_url};

async fn create(client: &reqwest::Client, server: &Basis, long_url: &str) -> String {
    let response = client
        .post(server.url("/shorten"))
        .json(&json!({"longUrl": long_url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["shortCode"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_unreachable_or_invalid_database_is_a_one_line_error_and_a_failed_exit() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgres://basis@127.0.0.1:1/nothing",
        "mysql://localhost/db",
    ] {
        for subcommand in [&["serve", "--listen", "127.0.0.1:0"][..], &["migrate"][..]] {
            let output = Command::new(env!("CARGO_BIN_EXE_basis"))
                .args(subcommand)
                .arg("--data-dir")
                .arg(dir.path())
                .env("DATABASE_URL", url)
                .output()
                .await
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{url}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{url} {subcommand:?}: {stderr}");
            assert!(lines[0].starts_with("error: "), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

/// The server turns transparent huge pages off for itself (its heap is small, and huge
/// pages multiplied its resident memory).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_server_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Basis::serve(dir.path(), None, &[]).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    // The line exists since Linux 5.0; an older kernel has nothing to check.
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}

/// A database URL listing a cluster's nodes is read at start: a bad host list or a session
/// attribute that could reach a standby stops `serve` with the reason, and so does a
/// cluster with no primary; the password never reaches the message.
#[tokio::test]
async fn a_bad_cluster_url_is_refused_at_start_saying_why_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    for (url, says) in [
        (
            "postgres://app:hunter2@127.0.0.1:1,,127.0.0.1:2/db",
            "empty entry",
        ),
        (
            "postgres://app:hunter2@127.0.0.1:1,127.0.0.1:port/db",
            "not a port number",
        ),
        (
            "postgres://app:hunter2@127.0.0.1:1,127.0.0.1:2/db?target_session_attrs=any",
            "use read-write",
        ),
        (
            "postgres://app:hunter2@127.0.0.1:1,127.0.0.1:2/db",
            "none of the nodes 127.0.0.1:1, 127.0.0.1:2 answers as a primary",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_basis"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("DATABASE_URL", url)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{url}: {stderr}");
    }
}

/// Hammers `code` until the server stops answering; returns (redirects seen, requests sent).
async fn load(
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
) -> u64 {
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        sent += 1;
        match client.get(&url).send().await {
            Ok(response) if response.status() == 301 => {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) => panic!("unexpected status {}", response.status()),
            Err(_) => break, // the server has closed: this request may or may not have counted
        }
    }
    sent
}

async fn sigterm_under_load_loses_no_counted_click(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Basis::serve(dir.path(), database_url.as_deref(), &[]).await;
    let client = client();
    let code = create(&client, &server, "https://example.com/load").await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        tasks.spawn(load(
            client.clone(),
            server.url(&format!("/{code}")),
            stop.clone(),
            seen.clone(),
        ));
    }
    // Let a few flushes happen under load, then stop the server mid-stream.
    while seen.load(Ordering::Relaxed) < 3000 {
        tokio::task::yield_now().await;
    }
    let status = server.terminate().await;
    assert!(status.success(), "a clean stop exits 0, got {status}");
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    while let Some(n) = tasks.join_next().await {
        sent += n.unwrap();
    }
    let seen = seen.load(Ordering::Relaxed);

    let server = Basis::serve(dir.path(), database_url.as_deref(), &[]).await;
    let link = get_json(&client, &server.url(&format!("/links/{code}"))).await;
    let stored = link["clickCount"].as_u64().unwrap();
    assert!(
        stored >= seen,
        "lost clicks: {seen} redirects answered, {stored} stored"
    );
    assert!(
        stored <= sent,
        "{stored} stored but only {sent} requests sent"
    );
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_counted_click_on_sqlite() {
    sigterm_under_load_loses_no_counted_click(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_counted_click_on_postgres() {
    let Some(admin) = postgres_admin_url() else {
        return;
    };
    sigterm_under_load_loses_no_counted_click(Some(fresh_postgres_database(&admin).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_create_links_without_collision() {
    let Some(admin) = postgres_admin_url() else {
        return;
    };
    let database = fresh_postgres_database(&admin).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(Basis::serve(dir_a.path(), Some(&database), &[]).await);
    let b = Arc::new(Basis::serve(dir_b.path(), Some(&database), &[]).await);
    let client = client();

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let server = if task % 2 == 0 { a.clone() } else { b.clone() };
        let client = client.clone();
        tasks.spawn(async move {
            let mut codes = Vec::new();
            for i in 0..500 {
                codes.push(
                    create(&client, &server, &format!("https://example.com/{task}/{i}")).await,
                );
            }
            codes
        });
    }
    let mut all = std::collections::HashSet::new();
    while let Some(codes) = tasks.join_next().await {
        all.extend(codes.unwrap());
    }
    assert_eq!(all.len(), 4000, "every create got its own code");
    // A link made through one process redirects through the other.
    for code in all.iter().take(50) {
        let via_a = client.get(a.url(&format!("/{code}"))).send().await.unwrap();
        let via_b = client.get(b.url(&format!("/{code}"))).send().await.unwrap();
        assert_eq!(via_a.status(), 301);
        assert_eq!(via_a.headers()["location"], via_b.headers()["location"]);
    }
}

fn redis_url() -> Option<String> {
    match std::env::var("BASIS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: BASIS_TEST_REDIS_URL is not set"
            );
            None
        }
    }
}

#[tokio::test]
async fn a_rule_file_that_does_not_parse_stops_the_server_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rules]]\nname = \"x\"\nlimit = \"many\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_basis"))
        .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit-config"])
        .arg(&rules)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("BASIS_RATE_LIMITS")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(
        last.contains("rules.toml") && last.contains("line 3"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_redis_enforce_one_limit() {
    let Some(redis) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "[store]\nkey_prefix = \"basis:test:{:016x}\"\n\n[[rules]]\nname = \"link_create\"\nmethods = [\"POST\"]\npaths = [\"/shorten\"]\nkey = \"client\"\nalgorithm = \"sliding_log\"\nlimit = 6\nperiod = \"1m\"\n",
            rand::random::<u64>()
        ),
    )
    .unwrap();
    let rules = rules.to_str().unwrap().to_owned();
    let flags = [
        "--rate-limits",
        "on",
        "--rate-limit-config",
        rules.as_str(),
        "--redis-url",
        redis.as_str(),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Basis::serve(dir_a.path(), None, &flags).await;
    let b = Basis::serve(dir_b.path(), None, &flags).await;
    let client = client();
    let mut allowed = 0;
    for i in 0..12 {
        let server = if i % 2 == 0 { &a } else { &b };
        let response = client
            .post(server.url("/shorten"))
            .json(&json!({"longUrl": format!("https://example.com/{i}")}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            201 => allowed += 1,
            429 => assert!(response.headers().contains_key("retry-after")),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(allowed, 6, "the two processes share one limit of 6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_process_reaches_the_other_s_cache() {
    let Some(redis) = redis_url() else { return };
    let Some(admin) = postgres_admin_url() else {
        return;
    };
    let database = fresh_postgres_database(&admin).await;
    let flags = ["--redis-url", redis.as_str()];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Basis::serve(dir_a.path(), Some(&database), &flags).await;
    let b = Basis::serve(dir_b.path(), Some(&database), &flags).await;
    let client = client();
    let code = create(&client, &a, "https://old.example/").await;
    let location = |server: &Basis| {
        let request = client.get(server.url(&format!("/{code}"))).send();
        async move {
            request.await.unwrap().headers()["location"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let metrics_url = b.url("/metrics");
    let l1_hits = || {
        metric(
            &client,
            &metrics_url,
            "basis_cache_hits_total",
            &[r#"namespace="links""#, r#"tier="l1""#],
        )
    };
    let invalidations = || {
        metric(
            &client,
            &metrics_url,
            "basis_cache_invalidations_received_total",
            &[r#"namespace="links""#],
        )
    };
    // B caches the link in its own memory: its second redirect is an L1 hit.
    assert_eq!(location(&b).await, "https://old.example/");
    let hits = l1_hits().await;
    assert_eq!(location(&b).await, "https://old.example/");
    assert_eq!(
        l1_hits().await,
        hits + 1.0,
        "B served the link from its memory"
    );
    let received = invalidations().await;

    let response = client
        .patch(a.url(&format!("/links/{code}")))
        .json(&json!({"longUrl": "https://new.example/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The invalidation travels through Redis pub/sub; docs/cache.md bounds it well under a
    // second. Poll B until it answers with the new target, within that bound.
    let started = std::time::Instant::now();
    loop {
        let seen = location(&b).await;
        if seen == "https://new.example/" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "B still serves {seen}"
        );
    }
    assert!(
        invalidations().await > received,
        "the change reached B as an invalidation, not through an expiry"
    );

    let response = client
        .delete(a.url(&format!("/links/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let started = std::time::Instant::now();
    loop {
        let status = client
            .get(b.url(&format!("/{code}")))
            .send()
            .await
            .unwrap()
            .status();
        if status == 404 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "B still redirects a deleted link"
        );
    }
}
