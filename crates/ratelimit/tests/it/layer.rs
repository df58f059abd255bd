//! The tower layer on a tiny axum router, driven with `oneshot`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use basis_ratelimit::{
    Limiter, ManualClock, MemoryConfig, RateLimitConfig, RateLimitLayer, RateLimitSubject,
};
use http::{Request, Response, StatusCode};
use tower::ServiceExt;

const RULES: &str = r#"
trusted_proxies = ["10.0.0.0/8"]

[[rules]]
name = "api"
paths = ["/links/**", "/shorten"]
key = "client"
algorithm = "sliding_window"
limit = 3
period = "1m"

[[rules]]
name = "create"
methods = ["POST"]
paths = ["/shorten"]
key = "client"
algorithm = "gcra"
limit = 2
period = "1h"
"#;

fn app(config: &RateLimitConfig) -> Router {
    let clock = ManualClock::new(Duration::from_secs(1_000));
    let limiter = Limiter::in_memory_with_clock(MemoryConfig::default(), Arc::new(clock));
    router(RateLimitLayer::new(config, limiter).unwrap())
}

fn router(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/links/{code}", get(|| async { "link" }))
        .route("/shorten", post(|| async { "created" }))
        .route("/{code}", get(|| async { "redirect" }))
        .layer(layer)
}

fn request(method: &str, path: &str, peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let mut req = builder.body(Body::empty()).unwrap();
    let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

async fn send(app: &Router, req: Request<Body>) -> Response<Body> {
    app.clone().oneshot(req).await.unwrap()
}

fn header<'a>(res: &'a Response<Body>, name: &str) -> &'a str {
    res.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn allowed_responses_carry_standard_and_legacy_headers() {
    let app = app(&RateLimitConfig::parse(RULES).unwrap());
    let res = send(&app, request("GET", "/links/abc", "192.0.2.1", &[])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "ratelimit-policy"), r#""api";q=3;w=60"#);
    // The manual clock stands at 1000 s: 80 s until this window's count stops weighing.
    assert_eq!(header(&res, "ratelimit"), r#""api";r=2;t=80"#);
    assert_eq!(header(&res, "x-ratelimit-limit"), "3");
    assert_eq!(header(&res, "x-ratelimit-remaining"), "2");
    let reset: u64 = header(&res, "x-ratelimit-reset").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now..=now + 81).contains(&reset),
        "reset {reset} is Unix seconds"
    );
}

#[tokio::test]
async fn every_matching_rule_is_listed() {
    let app = app(&RateLimitConfig::parse(RULES).unwrap());
    let res = send(&app, request("POST", "/shorten", "192.0.2.1", &[])).await;
    assert_eq!(
        header(&res, "ratelimit-policy"),
        r#""api";q=3;w=60, "create";q=2;w=3600"#
    );
    assert_eq!(
        header(&res, "ratelimit"),
        r#""api";r=2;t=80, "create";r=1;t=1800"#
    );
    assert_eq!(
        header(&res, "x-ratelimit-remaining"),
        "1",
        "the most restrictive rule"
    );
}

#[tokio::test]
async fn a_refusal_is_a_429_problem_with_retry_after() {
    let app = app(&RateLimitConfig::parse(RULES).unwrap());
    for _ in 0..2 {
        send(&app, request("POST", "/shorten", "192.0.2.1", &[])).await;
    }
    let res = send(&app, request("POST", "/shorten", "192.0.2.1", &[])).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "content-type"), "application/problem+json");
    assert_eq!(header(&res, "retry-after"), "1800");
    assert_eq!(header(&res, "x-ratelimit-remaining"), "0");
    let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["type"], "about:blank");
    assert_eq!(json["title"], "Too Many Requests");
    assert_eq!(json["status"], 429);
    assert_eq!(json["retryAfter"], 1800);
    assert_eq!(json["error"], "Rate limit exceeded");
    assert!(json["detail"].as_str().unwrap().contains("create"));
}

#[tokio::test]
async fn redirects_carry_no_limit_by_default() {
    let app = app(&RateLimitConfig::defaults());
    for _ in 0..300 {
        let res = send(&app, request("GET", "/abc123", "192.0.2.1", &[])).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("ratelimit").is_none());
    }
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let app = app(&RateLimitConfig::parse(RULES).unwrap());
    // Through the trusted proxy, two clients get two budgets.
    for client in ["198.51.100.1", "198.51.100.2"] {
        let xff = [("x-forwarded-for", client)];
        let res = send(&app, request("GET", "/links/a", "10.0.0.1", &xff)).await;
        assert_eq!(header(&res, "x-ratelimit-remaining"), "2", "{client}");
    }
    // An untrusted peer cannot pick a fresh budget by inventing addresses.
    for (i, fake) in ["1.1.1.1", "2.2.2.2", "garbage"].iter().enumerate() {
        let xff = [("x-forwarded-for", *fake)];
        let res = send(&app, request("GET", "/links/a", "203.0.113.5", &xff)).await;
        assert_eq!(header(&res, "x-ratelimit-remaining"), (2 - i).to_string());
    }
    // A malformed header from a trusted proxy is ignored: the proxy itself is the key.
    let bad = [("forwarded", "for=unknown")];
    let res = send(&app, request("GET", "/links/a", "10.0.0.1", &bad)).await;
    assert_eq!(header(&res, "x-ratelimit-remaining"), "2");
}

#[tokio::test]
async fn authenticated_clients_are_keyed_by_user_or_api_key() {
    let app = app(&RateLimitConfig::parse(RULES).unwrap());
    for who in [
        RateLimitSubject {
            user_id: Some("u1".into()),
            ..Default::default()
        },
        RateLimitSubject {
            user_id: Some("u2".into()),
            ..Default::default()
        },
        RateLimitSubject {
            api_key_id: Some("k1".into()),
            user_id: Some("u1".into()),
            ..Default::default()
        },
    ] {
        let mut req = request("GET", "/links/a", "192.0.2.9", &[]);
        req.extensions_mut().insert(who.clone());
        let res = send(&app, req).await;
        assert_eq!(header(&res, "x-ratelimit-remaining"), "2", "{who:?}");
    }
}

#[tokio::test]
async fn the_off_switch_disables_every_rule() {
    let mut config = RateLimitConfig::parse(RULES).unwrap();
    config.enabled = false;
    let app = app(&config);
    for _ in 0..10 {
        let res = send(&app, request("POST", "/shorten", "192.0.2.1", &[])).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn an_unreachable_redis_never_becomes_a_5xx() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    for (policy, expected) in [
        ("fail_open", StatusCode::OK),
        ("fail_closed", StatusCode::TOO_MANY_REQUESTS),
    ] {
        let text = format!("{RULES}\n[store]\non_outage = \"{policy}\"\n");
        let layer = RateLimitLayer::from_config(RateLimitConfig::parse(&text).unwrap(), Some(&url))
            .unwrap();
        let app = router(layer);
        let res = send(&app, request("GET", "/links/a", "192.0.2.1", &[])).await;
        assert_eq!(res.status(), expected, "{policy}");
    }
}

#[tokio::test]
async fn two_instances_sharing_redis_enforce_one_limit() {
    let Some(url) = super::common::redis_url("two_instances_sharing_redis_enforce_one_limit")
    else {
        return;
    };
    let text = format!(
        "{RULES}\n[store]\nkey_prefix = \"{}\"\n",
        super::common::unique_prefix("two_instances")
    );
    // Two layers with their own connections: what two `basis serve` processes hold.
    let first = router(
        RateLimitLayer::from_config(RateLimitConfig::parse(&text).unwrap(), Some(&url)).unwrap(),
    );
    let second = router(
        RateLimitLayer::from_config(RateLimitConfig::parse(&text).unwrap(), Some(&url)).unwrap(),
    );
    let mut statuses = Vec::new();
    for i in 0..4 {
        let app = if i % 2 == 0 { &first } else { &second };
        statuses.push(
            send(app, request("POST", "/shorten", "192.0.2.77", &[]))
                .await
                .status(),
        );
    }
    // "create" allows 2 per hour per client, whichever instance answers.
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[test]
fn building_a_redis_layer_outside_a_runtime_is_an_error_not_a_panic() {
    let result =
        RateLimitLayer::from_config(RateLimitConfig::defaults(), Some("redis://127.0.0.1:1"));
    assert!(
        matches!(result, Err(basis_ratelimit::Error::NoRuntime)),
        "{result:?}"
    );
}
