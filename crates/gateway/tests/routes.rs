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

fn one_route(backends: &[&TestBackend]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("\"http://{}\"", b.address))
        .collect();
    format!(
        "[[route]]\nname = \"api\"\nalgorithm = \"round-robin\"\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// The status entry of the backend at `address`.
fn entry(status: &Value, address: std::net::SocketAddr) -> Value {
    let name = format!("http://{address}");
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name.as_str())
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_reload_keeps_the_ejection_latency_and_in_flight_count_of_backends_that_stay() {
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, one_route(&[&a, &b])).unwrap();
    let mut cfg = config(Vec::new());
    cfg.config = Some(file.clone());
    cfg.health_check = basis_gateway::health::HealthMode::Off;
    cfg.eject_after = 1;
    cfg.eject_base_ms = 600_000;
    let gateway = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();

    // One 500 ejects whichever backend answers it (the cap lets only one of two out).
    let failed = client
        .get(gateway.url("/x?status=500"))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    let status = gateway.status().await;
    let (ejected, kept) = if entry(&status, a.address)["ejected"] == true {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(entry(&status, ejected.address)["ejected"], true, "{status}");
    // A slow request in flight on the other one, and a latency estimate it has earned.
    kept.delay_ms
        .store(300, std::sync::atomic::Ordering::SeqCst);
    let slow = tokio::spawn(client.get(gateway.url("/slow")).send());
    let in_flight = basis_testkit::eventually(std::time::Duration::from_secs(5), || async {
        entry(&gateway.status().await, kept.address)["inFlight"] == 1
    })
    .await;
    assert!(in_flight);

    std::fs::write(&file, one_route(&[&a, &b, &c])).unwrap();
    gateway.control.reload().unwrap();
    let status = gateway.status().await;
    let before = entry(&status, ejected.address);
    assert_eq!(before["ejected"], true, "ejection kept: {status}");
    assert_eq!(before["ejections"], 1);
    assert_eq!(before["requests"], 1);
    assert_eq!(
        entry(&status, kept.address)["inFlight"],
        1,
        "in flight kept: {status}"
    );
    assert_eq!(
        entry(&status, c.address)["requests"],
        0,
        "a new backend starts afresh"
    );

    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    kept.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    let status = gateway.status().await;
    let kept_now = entry(&status, kept.address);
    assert_eq!(kept_now["inFlight"], 0, "{status}");
    // The slow answer, recorded after the reload, lands in the same estimate.
    assert!(kept_now["ewmaMs"].as_f64().unwrap() >= 250.0, "{status}");
    // The ejected backend still gets nothing: requests go to the other two.
    for _ in 0..4 {
        client.get(gateway.url("/y")).send().await.unwrap();
    }
    assert_eq!(ejected.hits(), 1);
}
