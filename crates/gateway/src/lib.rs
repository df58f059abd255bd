//! `basis-gateway`: the load balancer in front of `basis serve` (`basis gateway`).
//!
//! # Where things are
//! - [`balance`]: the selection algorithms (round robin, smooth weighted round robin,
//!   weighted least connections, IP hash, consistent hashing on a ketama ring, random two
//!   choices, P2C over peak-EWMA latency) as pure code with unit and property tests.
//! - [`ewma`], [`outlier`], [`budget`], [`health`]: the signals behind the choice (latency
//!   estimate, passive ejection, retry budget, active checks); time is always an argument.
//! - [`backend`]: per-backend state and the pool that turns it into candidates (panic threshold).
//! - [`forwarded`]: `X-Forwarded-*`/`Forwarded` with trusted proxies, request ids, hop-by-hop headers.
//! - [`routes`]: the `--config` TOML file: routes by host and path, each with its algorithm.
//! - [`inflight`]: the in-flight count per backend and the response body that releases it.
//! - [`proxy`]: one request: checks, choice, streaming forward, retries, error answers.
//! - [`server`]: listeners, HTTP/1.1 + h2c on the client side, drain on shutdown.
//! - [`timer`]: one timer per HTTP/1.1 client connection for its per-request deadlines.
//! - [`upgrade`]: WebSocket (any `Upgrade`) pass-through.
//! - [`upstream`]: connections to backends (HTTP/1.1 idle lists per thread, HTTP/2, TLS).
//! - [`tls`]: TLS termination, the HTTP → HTTPS redirector, HSTS.
//! - [`tcp`]: L4 mode, balancing raw TCP connections over the same pool.
//! - [`status`]: `/gateway/status` and Prometheus `/metrics` on the admin listener.
//! - [`config`]: flags and `BASIS_GATEWAY_*` variables.
//!
//! # Why hyper + hyper-util rather than Pingora
//! The proxy core is hyper 1 (HTTP/1.1 and HTTP/2 parsing, already proven under axum in the
//! same binary): its server connections on the client side, its client connections to the
//! backends. Keeping idle upstream connections is ours ([`upstream`]): hyper-util's legacy
//! `Client` pool, used first, cost a shared lock, a SipHash and a spawned task per request,
//! and dropping it cut the instructions per proxied request by 18 % with the header work. Measured on
//! 2026-12-03: hyper, hyper-util, tokio and rustls are already in `Cargo.lock`, so the gateway
//! adds no crate. Resolving `pingora-proxy` 0.9 with `pingora-load-balancing` 0.9 in an empty
//! project (`cargo generate-lockfile`) gives 193 packages, 55 of them not in our lock: a second
//! HTTP implementation (`pingora-core`, `pingora-http`), its own runtime (`pingora-runtime`)
//! and daemon/upgrade machinery (`daemonix`, `nix`), YAML configuration, and C libraries built
//! with cmake (`libz-ng-sys`, `zstd-sys`). Its `Server` owns the process (threads, signals,
//! daemonising), so it would not share the binary's tokio runtime, logging or test harness.
//! The balancing, health and retry logic is ours either way, so Pingora would only contribute
//! connection handling that hyper already gives. Speed is checked against HAProxy and nginx
//! in `bench/gateway.sh` (figures in `bench/RESULTS.md`).

pub mod backend;
pub mod balance;
pub mod budget;
pub mod config;
pub mod ewma;
pub mod forwarded;
pub mod health;
pub mod inflight;
pub mod outlier;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod status;
pub mod tcp;
pub mod timer;
pub mod tls;
pub mod upgrade;
pub mod upstream;

pub use config::Config;
pub use server::Gateway;

/// Binds, logs `listening` with the address, and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let gateway = Gateway::bind(config).await?;
    match gateway.admin_addr() {
        Some(admin) => tracing::info!(address = %gateway.local_addr(), %admin, "listening"),
        None => tracing::info!(address = %gateway.local_addr(), "listening"),
    }
    gateway.run(shutdown).await
}
