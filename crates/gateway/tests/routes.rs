//! Routes from a configuration file, and reloads: a bad file keeps the running routes, a good
//! one takes over without failing a request under load.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::Value;
use support::{TestBackend, TestGateway, config};

async fn backend_of(client: &reqwest::Client, url: &str) -> String {
    let seen: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    seen["backend"].as_str().unwrap_or("").to_owned()
}

fn routes(api: &TestBackend, rest: &TestBackend) -> String {
    format!(
        "[[route]]\nname = \"api\"\npath_prefix = \"/api/\"\nalgorithm = \"round-robin\"\nbackends = [\"http://{}\"]\n\n\
         [[route]]\nname = \"rest\"\nbackends = [\"http://{}\"]\n",
        api.address, rest.address
    )
}

#[tokio::test]
async fn requests_follow_routes_and_a_reload_swaps_them_without_a_failure() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, routes(&a, &b)).unwrap();
    let mut cfg = config(Vec::new());
    cfg.config = Some(file.clone());
    let gateway = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();
    assert_eq!(backend_of(&client, &gateway.url("/api/users")).await, "a");
    assert_eq!(backend_of(&client, &gateway.url("/home")).await, "b");

    // Load during the reloads: every request must be answered by some backend.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let load = {
        let (client, url, stop, failed) = (
            client.clone(),
            gateway.url("/api/x"),
            stop.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if !client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    std::fs::write(
        &file,
        "[[route]]\nname = \"api\"\nalgorithm = \"fastest\"\nbackends = []\n",
    )
    .unwrap();
    let err = gateway.control.reload().unwrap_err();
    assert_eq!(err.line, 3, "{err}");
    assert_eq!(
        backend_of(&client, &gateway.url("/api/users")).await,
        "a",
        "old routes stay"
    );

    std::fs::write(&file, routes(&b, &a)).unwrap();
    gateway.control.reload().unwrap();
    assert_eq!(backend_of(&client, &gateway.url("/api/users")).await, "b");
    assert_eq!(backend_of(&client, &gateway.url("/home")).await, "a");
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    let status = gateway.status().await;
    assert_eq!(status["routes"][0]["name"], "api");
    assert_eq!(status["routes"][0]["algorithm"], "round-robin");
}

#[tokio::test]
async fn a_request_no_route_matches_is_404_from_the_gateway() {
    let a = TestBackend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "[[route]]\nname = \"api\"\npath_prefix = \"/api/\"\nbackends = [\"http://{}\"]\n",
            a.address
        ),
    )
    .unwrap();
    let mut cfg = config(Vec::new());
    cfg.config = Some(file);
    let gateway = TestGateway::start(cfg).await;
    let response = reqwest::get(gateway.url("/elsewhere")).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(a.hits(), 0);
}
