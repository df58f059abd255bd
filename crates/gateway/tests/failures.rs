//! Failing backends: one answering something other than HTTP, and an outage where the retry
//! budget keeps retries from multiplying the load.

mod support;

use basis_gateway::backend::BackendSpec;
use basis_gateway::balance::Algorithm;
use support::{TestBackend, TestGateway, config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Accepts connections, reads a little, writes non-HTTP bytes and closes.
async fn garbage_backend() -> BackendSpec {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(b"SSH-2.0-not-http\r\n\r\n").await;
            });
        }
    });
    spec
}

#[tokio::test]
async fn a_backend_answering_garbage_loses_its_gets_to_others_and_is_ejected() {
    let good = TestBackend::start("good").await;
    let mut cfg = config(vec![garbage_backend().await, good.spec()]);
    cfg.algorithm = Algorithm::RoundRobin;
    cfg.health_check = basis_gateway::health::HealthMode::Off;
    cfg.eject_after = 3;
    let gateway = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();
    for _ in 0..10 {
        let response = client.get(gateway.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let status = gateway.status().await;
    assert_eq!(status["backends"][0]["ejected"], true, "{status}");
    assert_eq!(status["backends"][0]["failures"], 3);
    assert_eq!(good.hits(), 10);
}

#[tokio::test]
async fn during_an_outage_the_retry_budget_caps_the_extra_attempts() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let specs = vec![a.spec(), b.spec()];
    a.stop().await;
    b.stop().await;
    let mut cfg = config(specs);
    cfg.health_check = basis_gateway::health::HealthMode::Off;
    cfg.eject_after = 0;
    cfg.retries = 1;
    cfg.retry_budget_percent = 20;
    let gateway = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let response = client.get(gateway.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }
    let status = gateway.status().await;
    let attempts: u64 = status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum();
    // 100 requests, and retries limited to 10 + 20 % of them (without a budget: 200 attempts).
    assert!((100..=130).contains(&attempts), "{attempts} attempts");
}
