//! Signing in and out: token login with rotating refresh tokens, cookie sessions,
//! password reset, and OpenID Connect login.
//!
//! - [`tokens`]: `POST /auth/login`, `/auth/refresh`, `/auth/logout`, `GET /auth/me`.
//! - [`session`]: `POST|GET|DELETE /auth/session` (the browser cookie).
//! - [`reset`]: `POST /auth/password-reset` and `/auth/password-reset/confirm`.
//! - [`oidc`]: `GET /auth/oidc/start` and `/auth/oidc/callback`.
//! - [`config`]: the flags and secret loading.
//!
//! The primitives (hashing, JWT, secrets, CSRF rules) are in the `basis-auth` crate; who is
//! calling is decided in [`crate::caller`].

use crate::http::routes::Routes;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use basis_auth::jwt::KeySet;
use basis_auth::mail::Mailer;
use basis_auth::session::SessionPolicy;
use basis_auth::throttle::{Action, Throttle};
use tokio::sync::OnceCell;

use crate::error::ApiError;
use crate::state::AppState;

pub mod config;
pub mod oidc;
pub mod reset;
pub mod session;
pub mod throttle;
pub mod tokens;

pub use config::AuthConfig;

/// Refresh tokens live this long (ms).
pub const REFRESH_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Password reset tokens live this long (ms).
pub const RESET_TTL_MS: i64 = 60 * 60 * 1000;

/// The identity services every instance holds (`Debug` leaves the secrets out).
pub struct Identity {
    /// Access token keys, issuer and audience.
    pub keys: KeySet,
    /// Asked before each password attempt and reset request.
    pub throttle: Arc<dyn Throttle>,
    /// Session timeouts.
    pub sessions: SessionPolicy,
    /// Outgoing mail, when `--smtp-url` is set.
    pub mailer: Option<Mailer>,
    /// The OpenID provider, discovered on first use (so a provider that starts after us
    /// does not stop the server from starting).
    pub oidc: OnceCell<basis_auth::oidc::Provider>,
    /// The OIDC client secret, loaded at start.
    pub oidc_secret: Option<String>,
    /// The configuration.
    pub config: AuthConfig,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("keys", &self.keys)
            .field("throttle", &self.throttle)
            .field("sessions", &self.sessions)
            .field("mailer", &self.mailer)
            .field("oidc", &self.oidc.get().map(|p| p.issuer()))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Builds the services from configuration; `base_url` is our public origin.
    pub fn build(
        config: &crate::Config,
        base_url: &url::Url,
        throttle: Arc<dyn Throttle>,
    ) -> anyhow::Result<Self> {
        let auth = &config.auth;
        let spec = auth.jwt_key_spec(config.environment, &config.data_dir)?;
        let issuer = base_url.as_str().trim_end_matches('/');
        let keys = KeySet::parse(&spec, issuer, "basis-api")?;
        let mailer = auth
            .smtp_url
            .as_deref()
            .map(|url| Mailer::new(url, &auth.mail_from))
            .transpose()?;
        Ok(Self {
            keys,
            throttle,
            sessions: SessionPolicy::default(),
            mailer,
            oidc: OnceCell::new(),
            oidc_secret: auth.oidc_secret()?,
            config: auth.clone(),
        })
    }

    /// Asks the throttle whether `subject` may attempt `action` now (429 if not).
    pub async fn throttle(
        &self,
        state: &AppState,
        action: Action,
        subject: &str,
    ) -> Result<(), ApiError> {
        let now = state.clock.now_ms();
        match self.throttle.attempt(action, subject, now).await {
            Ok(()) => Ok(()),
            Err(retry_after) => Err(ApiError::TooManyRequests {
                retry_after,
                detail: format!("too many {} attempts; try again later", action.as_str()),
            }),
        }
    }
}

/// The identity routes.
pub fn router() -> Routes<AppState> {
    Routes::new()
        .post("/auth/login", tokens::login)
        .post("/auth/refresh", tokens::refresh)
        .post("/auth/logout", tokens::logout)
        .get("/auth/me", tokens::me)
        .post("/auth/session", session::create)
        .get("/auth/session", session::read)
        .delete("/auth/session", session::remove)
        .post("/auth/password-reset", reset::request)
        .post("/auth/password-reset/confirm", reset::confirm)
        .get("/auth/oidc/start", oidc::start)
        .get("/auth/oidc/callback", oidc::callback)
}

/// The client's address (the TCP peer; a trusted proxy's header is the rate limiter's
/// business).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

impl ClientIp {
    /// The address as text for throttle keys and audit events.
    pub fn text(&self) -> String {
        self.0.map_or_else(|| "-".to_owned(), |ip| ip.to_string())
    }
}

/// Normalises an email: trimmed and lower-cased, with one `@` and no spaces.
pub fn normalise_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let valid = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    valid.then_some(email)
}

#[cfg(test)]
mod tests {
    use super::normalise_email;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalise_email("  Alice@Example.COM "),
            Some("alice@example.com".into())
        );
        assert_eq!(normalise_email("no-at-sign"), None);
        assert_eq!(normalise_email("a@b@c.d"), None);
        assert_eq!(normalise_email("a b@c.d"), None);
        assert_eq!(normalise_email("a@nodot"), None);
    }
}
