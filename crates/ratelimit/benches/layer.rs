//! Overhead of the middleware on a trivial route: the same request through a router
//! with and without the rate-limit layer (in-memory store, one matching rule).
//!
//! `cargo bench -p basis-ratelimit --bench layer`

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use basis_ratelimit::{Limiter, MemoryConfig, RateLimitConfig, RateLimitLayer};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;

const RULES: &str = r#"
[[rules]]
name = "api"
paths = ["/links/**"]
algorithm = "gcra"
limit = 1000000000
period = "1s"
"#;

fn request(i: u32) -> Request<Body> {
    let mut req = Request::get("/links/abc").body(Body::empty()).unwrap();
    let peer = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 40_000));
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let plain = Router::new().route("/links/{code}", get(|| async { "ok" }));
    let config = RateLimitConfig::parse(RULES).unwrap();
    let limited = plain
        .clone()
        .layer(RateLimitLayer::new(&config, Limiter::in_memory(MemoryConfig::default())).unwrap());
    let mut g = c.benchmark_group("middleware");
    let mut i = 0u32;
    g.bench_function("route without the layer", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            plain.clone().oneshot(request(i % 1000))
        })
    });
    g.bench_function("route with the layer (1 rule, 1000 clients)", |b| {
        b.to_async(&rt).iter(|| {
            i = i.wrapping_add(1);
            limited.clone().oneshot(request(i % 1000))
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = layer }
criterion_main!(benches);
