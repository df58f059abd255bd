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

/// Sends one request on `stream` and reads its answer's status line and headers.
async fn exchange(stream: &mut tokio::net::TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads until the gateway closes `stream`; panics if it is still open after `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: std::time::Duration) {
    let mut rest = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut rest))
        .await
        .expect("the gateway kept the connection open")
        .ok();
}

#[tokio::test]
async fn client_header_deadlines_close_slow_and_idle_connections_but_not_busy_ones() {
    let backend = TestBackend::start("a").await;
    let mut cfg = config(vec![backend.spec()]);
    cfg.health_check = basis_gateway::health::HealthMode::Off;
    cfg.client_header_timeout_ms = 300;
    let gateway = TestGateway::start(cfg).await;
    let address = gateway.url("").trim_start_matches("http://").to_owned();

    // Requests on one connection for three times the timeout: each one's deadline is new.
    let mut busy = tokio::net::TcpStream::connect(&address).await.unwrap();
    for _ in 0..9 {
        let answer = exchange(&mut busy).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The same connection left idle is closed once the next request's headers are overdue.
    closed_within(&mut busy, std::time::Duration::from_secs(3)).await;

    // Headers that never end: the connection is closed too.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: gw.test\r\n")
        .await
        .unwrap();
    closed_within(&mut slow, std::time::Duration::from_secs(3)).await;
    assert_eq!(backend.hits(), 9);
}
