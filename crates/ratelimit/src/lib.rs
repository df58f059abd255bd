//! Rate limiting for Basis: five algorithms, an in-memory and a Redis store, an outage
//! policy, and a tower layer for axum with standard response headers.
//!
//! # Where things are
//!
//! | module | what it holds |
//! |---|---|
//! | [`algorithm`] | the five algorithms as pure functions of `(policy, state, now, cost)`, each documenting its memory per key and its accuracy at window edges |
//! | [`clock`] | the injected [`Clock`]: [`SystemClock`] in production, [`ManualClock`] in tests |
//! | [`store`] | [`MemoryStore`] (sharded, bounded) and [`RedisStore`] (one atomic Lua script per decision, Redis clock), behind the [`Store`] trait |
//! | [`limiter`] | [`Limiter`]: a store plus the decision timeout and the [`OutagePolicy`] |
//! | [`http`] | the axum/tower [`RateLimitLayer`]: rules from TOML, client identification, headers, 429 problem+json |
//! | [`metrics`] | the metric names the crate emits |
//!
//! # Using it from a server
//!
//! ```no_run
//! # async fn run() -> Result<(), basis_ratelimit::Error> {
//! use basis_ratelimit::{RateLimitConfig, RateLimitLayer};
//!
//! // The rule file from --rate-limit-config / BASIS_RATE_LIMIT_CONFIG (None: the built-in
//! // rules), then the BASIS_RATE_LIMITS switch (`off` disables every rule).
//! let path: Option<std::path::PathBuf> = std::env::var_os("BASIS_RATE_LIMIT_CONFIG").map(Into::into);
//! let switch = std::env::var("BASIS_RATE_LIMITS").ok();
//! let config = RateLimitConfig::load(path.as_deref(), switch.as_deref())?;
//! // REDIS_URL set: limits shared through Redis; unset: in this process.
//! let layer = RateLimitLayer::from_config(config, std::env::var("REDIS_URL").ok().as_deref())?;
//! let app: axum::Router = axum::Router::new().layer(layer);
//! // Serve with `app.into_make_service_with_connect_info::<std::net::SocketAddr>()` so the
//! // layer sees the peer address. A layer that identifies the caller and inserts a
//! // `RateLimitSubject` extension must run before this one (i.e. be added after it).
//! # Ok(()) }
//! ```
//!
//! Without a `RateLimitSubject` every rule keys by client IP (IPv6 by /64). Idle in-memory
//! keys are swept when a shard fills up; a server may also call
//! `layer.limiter().purge_idle()` from a periodic task.
//!
//! The algorithms compared, with measured figures: `docs/ratelimit.md`.

pub mod algorithm;
pub mod clock;
mod error;
pub mod http;
pub mod limiter;
pub mod metrics;
pub mod store;
mod subject;

pub use algorithm::{Algorithm, Decision, Policy, State};
pub use clock::{Clock, ManualClock, Nanos, SystemClock};
pub use error::Error;
pub use http::{RateLimitConfig, RateLimitLayer, RateLimitService, RateLimitSubject};
pub use limiter::{Limiter, OutageConfig, OutagePolicy, SharedClock, Source, Verdict};
pub use store::{Check, MemoryConfig, MemoryStore, RedisConfig, RedisStore, Store};
pub use subject::ip_subject;
