//! Identity primitives for Basis, usable without the server.
//!
//! # Where things are
//!
//! | module | what it holds |
//! |---|---|
//! | [`password`] | argon2id hashing off the async workers with bounded concurrency, rehash detection, the password policy |
//! | [`secret`] | random opaque secrets (refresh tokens, session ids, API keys, reset tokens) and their stored SHA-256 digests |
//! | [`breached`] | the breached-password list shipped with the project, checked at every password change |
//! | [`totp`] | time-based one-time codes (RFC 6238), the enrolment URI and QR code, recovery codes |
//! | [`jwt`] | access tokens: claims, a key set selected by `kid`, the pinned algorithm, verification against an injected time |
//! | [`role`] | roles (`user`, `moderator`, `admin`) and API key scopes |
//! | [`session`] | cookie sessions: the cookie, idle and absolute timeouts, the CSRF and same-origin checks |
//! | [`throttle`] | the [`throttle::Throttle`] seam called before each login attempt, and a small in-memory fixed window |
//! | [`oidc`] | the OpenID Connect relying party: discovery, authorization code + PKCE (S256), state, nonce |
//! | [`mail`] | outgoing mail over SMTP |
//!
//! The HTTP routes that use these live in `basis-server` (`auth`, `users`, `admin`).
//! Nothing here reads the clock: every function that depends on time takes `now`.

pub mod breached;
pub mod jwt;
pub mod mail;
pub mod oidc;
pub mod password;
pub mod role;
pub mod secret;
pub mod session;
pub mod throttle;
pub mod totp;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A token could not be verified (malformed, expired, wrong signature, algorithm, issuer
    /// or audience). Deliberately vague: the reason goes to logs, not to clients.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A password does not meet the policy; the message is fit for the client.
    #[error("{0}")]
    WeakPassword(String),
    /// A secret or key in the configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The OpenID provider could not be reached or answered something unusable.
    #[error("OpenID Connect: {0}")]
    Oidc(String),
    /// Mail could not be handed to the SMTP server.
    #[error("mail: {0}")]
    Mail(String),
    /// A blocking task failed or the hashing pool closed: a bug, never the client's fault.
    #[error("internal: {0}")]
    Internal(String),
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
