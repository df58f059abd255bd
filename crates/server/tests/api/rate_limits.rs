//! The rate limiter in front of the API: 429 with standard headers, redirects unlimited.

use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_problem};

/// Rules allowing 3 link creations per minute, kept in a unique Redis key space.
fn three_creates_per_minute(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("rules.toml");
    let prefix = format!("basis:test:{:016x}", rand::random::<u64>());
    std::fs::write(
        &path,
        format!(
            r#"
[store]
key_prefix = "{prefix}"

[[rules]]
name = "link_create"
methods = ["POST"]
paths = ["/shorten"]
key = "client"
algorithm = "gcra"
limit = 3
period = "1m"
"#
        ),
    )
    .unwrap();
    path
}

async fn creating_past_the_limit_is_429(redis_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let rules = three_creates_per_minute(dir.path());
    let app = TestApp::spawn_with(&Engine::Sqlite, |c| {
        c.rate_limits = None;
        c.rate_limit_config = Some(rules.clone());
        c.redis_url = redis_url.clone();
    })
    .await;
    for i in 0..3 {
        let response = app
            .shorten(json!({"longUrl": format!("https://example.com/{i}")}))
            .await;
        assert_eq!(response.status(), 201);
        let headers = response.headers();
        assert_eq!(headers["x-ratelimit-limit"], "3");
        assert_eq!(
            headers["x-ratelimit-remaining"],
            (2 - i).to_string().as_str()
        );
        assert!(headers.contains_key("ratelimit-policy"));
        assert!(headers.contains_key("ratelimit"));
    }
    let response = app
        .shorten(json!({"longUrl": "https://example.com/over"}))
        .await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let reset: u64 = response.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > 1_700_000_000, "Unix seconds, got {reset}");
    let body: Value = assert_problem(response, 429).await;
    assert_eq!(body["error"], "Rate limit exceeded");
    assert_eq!(body["retryAfter"], retry_after);
    // The rejected request created nothing.
    let stored =
        basis_store::links::find_reusable(&app.state.store, "https://example.com/over", None, None)
            .await
            .unwrap();
    assert!(stored.is_none());
}

#[tokio::test]
async fn creating_past_the_limit_is_429_with_the_memory_store() {
    creating_past_the_limit_is_429(None).await;
}

#[tokio::test]
async fn creating_past_the_limit_is_429_with_the_redis_store() {
    match std::env::var("BASIS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => creating_past_the_limit_is_429(Some(url)).await,
        _ => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: BASIS_TEST_REDIS_URL is not set"
            );
        }
    }
}

#[tokio::test]
async fn redirects_carry_no_limit_under_the_default_rules() {
    let app = TestApp::spawn_with(&Engine::Sqlite, |c| c.rate_limits = None).await;
    let code = app.create(json!({"longUrl": "https://example.com/"})).await["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..150 {
        let response = app.follow(&code).await;
        assert_eq!(response.status(), 301);
        assert!(!response.headers().contains_key("ratelimit"));
    }
    // The API itself is limited by default.
    let response = app.get(&format!("/links/{code}")).await;
    assert!(response.headers().contains_key("ratelimit-policy"));
}

/// A wrong-password login for `email` through `app`, answered 401 or 429.
async fn failed_login(app: &TestApp, email: &str) -> reqwest::StatusCode {
    app.post_json(
        "/auth/login",
        json!({"email": email, "password": "not the password at all"}),
    )
    .await
    .status()
}

#[tokio::test]
async fn login_attempts_are_counted_once_across_instances_sharing_redis() {
    let Ok(redis_url) = std::env::var("BASIS_TEST_REDIS_URL") else {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: BASIS_TEST_REDIS_URL is not set"
        );
        return;
    };
    // The HTTP rules are off, so only the login throttle can answer 429 here.
    let shared = |c: &mut basis_server::Config| {
        c.rate_limits = Some("off".into());
        c.redis_url = Some(redis_url.clone());
    };
    let a = TestApp::spawn_with(&Engine::Sqlite, shared).await;
    let b = TestApp::spawn_with(&Engine::Sqlite, shared).await;
    // A fresh address per run, so earlier runs' counters in the shared Redis do not count.
    let email = format!("guesser-{:016x}@example.com", rand::random::<u64>());

    // The allowance is 5 attempts per window for an account and address, whichever
    // instance receives them.
    for app in [&a, &b, &a, &b, &a] {
        assert_eq!(failed_login(app, &email).await, 401);
    }
    for app in [&b, &a] {
        assert_eq!(failed_login(app, &email).await, 429);
    }
    // Another account from the same address is counted apart.
    let other = format!("other-{email}");
    assert_eq!(failed_login(&b, &other).await, 401);
}
