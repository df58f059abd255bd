//! The added latency of authentication: `caller::authenticate` for an anonymous request
//! and for one with a bearer JWT (the hot path adds only header parsing and an HS256
//! check, no database), and the token-cutoff lookup on its own. Results and commands:
//! `bench/auth/RESULTS.md`.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use basis_auth::role::Role;
use basis_server::clock::SystemClock;
use basis_server::identity::caller::authenticate;
use basis_server::{Config, Server};
use criterion::{Criterion, criterion_group, criterion_main};

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = Config::with_data_dir(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("an address");
    let server = runtime
        .block_on(Server::build_with_clock(
            config,
            std::sync::Arc::new(SystemClock),
        ))
        .expect("the app builds");
    let state = server.state().clone();
    let now = chrono::Utc::now().timestamp();
    let (token, _) = state
        .identity
        .keys
        .issue("0123456789abcdef0123456789abcdef", Role::User, now)
        .expect("a token");

    let anonymous = HeaderMap::new();
    let mut bearer = HeaderMap::new();
    bearer.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("a header"),
    );
    let mut group = c.benchmark_group("authenticate");
    group.bench_function("anonymous", |b| {
        b.to_async(&runtime)
            .iter(|| authenticate(&Method::GET, &anonymous, &state))
    });
    group.bench_function("bearer_jwt", |b| {
        b.to_async(&runtime)
            .iter(|| authenticate(&Method::GET, &bearer, &state))
    });
    group.finish();

    // The per-request check of the account's token cutoff, with 10,000 accounts cut in
    // the last 15 minutes (a large burst of demotions and sign-outs).
    runtime.block_on(async {
        for i in 0..10_000 {
            state
                .identity
                .cutoffs
                .applied(&format!("{i:032x}"), now * 1000)
                .await;
        }
    });
    let cutoffs = &state.identity.cutoffs;
    c.bench_function("token_cutoff_check", |b| {
        b.iter(|| {
            cutoffs.refuses(
                std::hint::black_box("0123456789abcdef0123456789abcdef"),
                std::hint::black_box(now * 1000),
            )
        })
    });
}

criterion_group!(benches, overhead);
criterion_main!(benches);
