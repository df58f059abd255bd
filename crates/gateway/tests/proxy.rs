//! The gateway in front of real HTTP backends: forwarding, headers, limits, errors, retries,
//! health and ejection, observed through the public HTTP interface.

mod support;

use std::time::Duration;

use basis_gateway::balance::Algorithm;
use basis_testkit::eventually;
use serde_json::Value;
use support::{TestBackend, TestGateway, config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.expect("a response");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends raw bytes and returns the status line of the answer.
async fn raw(gateway: &TestGateway, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway.address)
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn requests_reach_every_backend_with_forwarding_headers_the_client_cannot_forge() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let mut cfg = config(vec![a.spec(), b.spec()]);
    cfg.algorithm = Algorithm::RoundRobin;
    let gateway = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();
    let response = client
        .get(gateway.url("/hello"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["xForwardedFor"], "127.0.0.1");
    assert_eq!(seen["xForwardedProto"], "http");
    assert_eq!(seen["requestId"], "trace-me-42");
    assert_eq!(seen["host"], gateway.address.to_string());
    assert!(
        seen["forwarded"]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http")
    );

    let (_, second) = get(&client, &gateway.url("/")).await;
    assert_ne!(second["backend"], seen["backend"], "round robin alternates");
    assert_eq!(
        second["requestId"].as_str().unwrap().len(),
        32,
        "an id is created"
    );
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_for_is_kept_and_extended() {
    let a = TestBackend::start("a").await;
    let mut cfg = config(vec![a.spec()]);
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let gateway = TestGateway::start(cfg).await;
    let seen: Value = reqwest::Client::new()
        .get(gateway.url("/"))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["xForwardedFor"], "198.51.100.7, 127.0.0.1");
}

#[tokio::test]
async fn malformed_or_oversized_requests_get_4xx_without_reaching_a_backend() {
    let a = TestBackend::start("a").await;
    let mut cfg = config(vec![a.spec()]);
    cfg.max_headers = 20;
    let gateway = TestGateway::start(cfg).await;
    let bad = raw(
        &gateway,
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let no_host = raw(&gateway, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let too_many = raw(
        &gateway,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(too_many.starts_with("HTTP/1.1 431"), "{too_many}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let too_big = raw(&gateway, huge.as_bytes()).await;
    assert!(too_big.starts_with("HTTP/1.1 431"), "{too_big}");
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn with_no_backend_listening_the_answer_is_503_with_retry_after() {
    let dead = TestBackend::start("dead").await;
    let spec = dead.spec();
    dead.stop().await;
    let mut cfg = config(vec![spec]);
    cfg.health_check = basis_gateway::health::HealthMode::Off;
    let gateway = TestGateway::start(cfg).await;
    let response = reqwest::get(gateway.url("/")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_backend_and_the_dead_one_ejected() {
    let (a, dead) = (
        TestBackend::start("a").await,
        TestBackend::start("dead").await,
    );
    let dead_spec = dead.spec();
    dead.stop().await;
    let mut cfg = config(vec![a.spec(), dead_spec]);
    cfg.algorithm = Algorithm::RoundRobin;
    cfg.health_check = basis_gateway::health::HealthMode::Off;
    cfg.eject_after = 2;
    let gateway = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        // A POST the dead backend never saw is retried although not idempotent; its small body
        // was read first, so it can be sent again.
        let response = client
            .post(gateway.url("/"))
            .body("name=value")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let seen: Value = response.json().await.unwrap();
        assert_eq!(seen["bodyLength"], 10);
    }
    let status = gateway.status().await;
    assert_eq!(status["backends"][1]["ejected"], true, "{status}");
    assert_eq!(
        status["backends"][1]["failures"], 2,
        "ejected after two, then skipped"
    );
}

#[tokio::test]
async fn a_hanging_backend_costs_a_timeout_and_idempotent_requests_go_elsewhere() {
    let (a, slow) = (
        TestBackend::start("a").await,
        TestBackend::start("slow").await,
    );
    slow.delay_ms
        .store(10_000, std::sync::atomic::Ordering::SeqCst);
    let mut cfg = config(vec![slow.spec(), a.spec()]);
    cfg.algorithm = Algorithm::RoundRobin;
    cfg.header_timeout_ms = 200;
    let gateway = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();
    let (status, seen) = get(&client, &gateway.url("/")).await;
    assert_eq!((status, seen["backend"].as_str()), (200, Some("a")));
    // A request with a body cannot be replayed: the hang is answered with 504.
    let statuses: Vec<u16> = futures_statuses(&client, &gateway).await;
    assert!(statuses.contains(&504), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 504),
        "{statuses:?}"
    );
}

async fn futures_statuses(client: &reqwest::Client, gateway: &TestGateway) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let response = client
            .post(gateway.url("/"))
            .body("payload")
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn a_draining_backend_gets_no_new_requests_and_comes_back_when_ready() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let mut cfg = config(vec![a.spec(), b.spec()]);
    cfg.algorithm = Algorithm::RoundRobin;
    let gateway = TestGateway::start(cfg).await;
    b.ready_status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let drained = eventually(Duration::from_secs(5), || async {
        gateway.status().await["backends"][1]["health"] == "draining"
    })
    .await;
    assert!(drained);
    let before = b.hits();
    let client = reqwest::Client::new();
    for _ in 0..10 {
        assert_eq!(get(&client, &gateway.url("/")).await.1["backend"], "a");
    }
    assert_eq!(b.hits(), before);
    b.ready_status
        .store(200, std::sync::atomic::Ordering::SeqCst);
    let back = eventually(Duration::from_secs(5), || async {
        gateway.status().await["backends"][1]["health"] == "up"
    })
    .await;
    assert!(back);
}

#[tokio::test]
async fn backend_5xx_answers_pass_through_and_count_toward_ejection() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let mut cfg = config(vec![a.spec(), b.spec()]);
    cfg.algorithm = Algorithm::RoundRobin;
    cfg.eject_after = 3;
    let gateway = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();
    for _ in 0..6 {
        assert_eq!(get(&client, &gateway.url("/?status=500")).await.0, 500);
    }
    let status = gateway.status().await;
    let ejected = status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["ejected"] == true)
        .count();
    assert_eq!(ejected, 1, "at most half may be ejected: {status}");
}

#[tokio::test]
async fn bodies_stream_through_and_metrics_name_each_backend() {
    let a = TestBackend::start("a").await;
    let gateway = TestGateway::start(config(vec![a.spec()])).await;
    let body = vec![b'x'; 3 * 1024 * 1024];
    let seen: Value = reqwest::Client::new()
        .put(gateway.url("/upload"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["bodyLength"], 3 * 1024 * 1024);
    let metrics = reqwest::get(format!("http://{}/metrics", gateway.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!(
        "gateway_backend_requests_total{{route=\"default\",backend=\"http://{}\"}} 1",
        a.address
    );
    assert!(metrics.contains(&line), "{metrics}");
    assert_eq!(gateway.status().await["backends"][0]["inFlight"], 0);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_an_open_request_finish() {
    let a = TestBackend::start("a").await;
    a.delay_ms.store(300, std::sync::atomic::Ordering::SeqCst);
    let gateway = TestGateway::start(config(vec![a.spec()])).await;
    let address = gateway.address;
    let url = gateway.url("/slow");
    let in_flight =
        tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    let arrived = eventually(Duration::from_secs(5), || async { a.hits() == 1 }).await;
    assert!(arrived);
    gateway.shutdown().await.unwrap();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the open request finished"
    );
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "no longer accepting"
    );
}
