//! "Log in with …" (OpenID Connect): login flows waiting for the provider's callback (any
//! instance may receive it), and the provider identities linked to accounts.

use crate::{Result, Store, on_foreign_key, on_pool};

/// A started login, kept under its `state` until the callback takes it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingLogin {
    /// The `state` sent to the provider (the key).
    pub state: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
    /// Where the browser goes after login.
    pub redirect_to: String,
    /// When the flow stops being accepted, Unix ms.
    pub expires_at: i64,
}

/// Stores a started login.
pub async fn start(store: &Store, login: &PendingLogin) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO oidc_requests (state, nonce, pkce_verifier, redirect_to, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&login.state)
        .bind(&login.nonce)
        .bind(&login.pkce_verifier)
        .bind(&login.redirect_to)
        .bind(login.expires_at)
        .execute(pool)
        .await
        .map(drop)
    })?;
    Ok(())
}

/// Takes the login started with `state`, once: a replayed state finds nothing. Whether it
/// has expired is the caller's check (the answer differs from an unknown state).
pub async fn take(store: &Store, state: &str) -> Result<Option<PendingLogin>> {
    Ok(on_pool!(store, write, pool => {
        sqlx::query_as::<_, PendingLogin>(
            "DELETE FROM oidc_requests WHERE state = $1 \
             RETURNING state, nonce, pkce_verifier, redirect_to, expires_at",
        )
        .bind(state)
        .fetch_optional(pool)
        .await
    })?)
}

/// The account linked to the identity `subject` at `issuer`.
pub async fn linked_user(store: &Store, issuer: &str, subject: &str) -> Result<Option<String>> {
    Ok(on_pool!(store, write, pool => {
        sqlx::query_scalar("SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2")
            .bind(issuer)
            .bind(subject)
            .fetch_optional(pool)
            .await
    })?)
}

/// Links the identity to `user_id`; an identity already linked keeps its account. An
/// account that no longer exists is `MissingReference("user")`.
pub async fn link(
    store: &Store,
    issuer: &str,
    subject: &str,
    user_id: &str,
    now: i64,
) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO user_identities (issuer, subject, user_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (issuer, subject) DO NOTHING",
        )
        .bind(issuer)
        .bind(subject)
        .bind(user_id)
        .bind(now)
        .execute(pool)
        .await
        .map(drop)
    })
    .map_err(|e| on_foreign_key(e, "user"))
}
