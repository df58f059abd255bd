//! Who the users are and who is calling, below every resource:
//!
//! - [`Identity`]: the services every instance holds for it (signing keys, the login
//!   throttle, session rules, mail, the OpenID provider);
//! - [`caller`]: the [`caller::Caller`] extractor, which authenticates each request;
//! - [`cutoffs`]: per-account times before which access tokens are refused;
//! - [`views`]: what anyone or the owner may see of an account, and its cache;
//! - [`config`]: the flags and secret loading; [`throttle`]: login attempts counted in
//!   Redis when configured.
//!
//! The routes that sign people in and manage accounts are in [`crate::accounts`]; the
//! primitives (hashing, JWT, secrets, CSRF rules) in the `basis-auth` crate.

use std::sync::Arc;

use basis_auth::jwt::KeySet;
use basis_auth::mail::Mailer;
use basis_auth::session::SessionPolicy;
use basis_auth::throttle::{Action, Throttle};
use tokio::sync::OnceCell;

use crate::clock::Clock;
use crate::error::ApiError;

pub mod caller;
pub mod config;
pub mod cutoffs;
pub mod throttle;
pub mod views;

pub use config::{AuthConfig, Environment};

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
    /// Per-account cutoffs that refuse access tokens issued before them.
    pub cutoffs: cutoffs::TokenCutoffs,
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
    /// `data_dir` keeps the development signing key; `environment` decides whether one
    /// may be generated there.
    pub fn build(
        auth: &AuthConfig,
        environment: Environment,
        data_dir: &std::path::Path,
        base_url: &url::Url,
        throttle: Arc<dyn Throttle>,
        cutoffs: cutoffs::TokenCutoffs,
    ) -> anyhow::Result<Self> {
        let spec = auth.jwt_key_spec(environment, data_dir)?;
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
            cutoffs,
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
        clock: &dyn Clock,
        action: Action,
        subject: &str,
    ) -> Result<(), ApiError> {
        let now = clock.now_ms();
        match self.throttle.attempt(action, subject, now).await {
            Ok(()) => Ok(()),
            Err(retry_after) => Err(ApiError::TooManyRequests {
                retry_after,
                detail: format!("too many {} attempts; try again later", action.as_str()),
            }),
        }
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
