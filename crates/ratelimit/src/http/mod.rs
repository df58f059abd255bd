//! The axum/tower side: [`RateLimitLayer`] applies configured rules to requests.
//!
//! * [`config`]: the TOML rule file and the built-in defaults;
//! * `rules`: path patterns, methods and who a rule limits ([`KeyKind`]);
//! * `client_ip`: the peer address and trusted forwarding headers ([`client_ip()`], also
//!   used by the server wherever it records who a client is);
//! * `response`: `RateLimit-Policy` / `RateLimit` / `X-RateLimit-*` headers and the 429;
//! * `layer`: the [`tower::Layer`] and [`tower::Service`].

mod client_ip;
pub mod config;
mod layer;
mod response;
mod rules;

pub use client_ip::{IpNet, client_ip};
pub use config::{RateLimitConfig, RuleConfig, StoreSettings};
pub use layer::{RateLimitLayer, RateLimitService, RejectHook, Rejection};
pub use rules::{KeyKind, PathPattern};

/// Who is making a request, as far as the rate limiter should know. The server's
/// authentication layer (placed *outside*, i.e. before, the rate-limit layer) inserts it
/// as a request extension; without it every rule keys by client IP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitSubject {
    /// The authenticated user's id.
    pub user_id: Option<String>,
    /// The id (never the secret) of the API key used.
    pub api_key_id: Option<String>,
    /// The account a login or password-reset request names (e.g. the e-mail address),
    /// normalised by whoever sets it (lower-case, trimmed).
    pub account: Option<String>,
}
