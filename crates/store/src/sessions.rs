//! Cookie sessions of browsers, stored by the digest of their id. Whether a session is
//! still live (idle and absolute timeouts) is the caller's policy; the store keeps the
//! times it needs.

use crate::{Result, Store, on_foreign_key, on_pool};

/// A stored session, with its owner's current role.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    /// The digest of the session id.
    pub id_hash: String,
    /// The owner.
    pub user_id: String,
    /// The owner's current role.
    pub role: String,
    /// The CSRF token.
    pub csrf_token: String,
    /// Login time, Unix ms.
    pub created_at: i64,
    /// Last use, Unix ms.
    pub last_seen_at: i64,
}

/// A session to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession<'a> {
    /// The digest of the session id (the id itself is only in the cookie).
    pub id_hash: &'a str,
    /// The owner.
    pub user_id: &'a str,
    /// The CSRF token.
    pub csrf_token: &'a str,
    /// Login time, Unix ms (also the first "last seen").
    pub now: i64,
}

/// Stores a new session. An owner that no longer exists is `MissingReference("user")`.
pub async fn insert(store: &Store, session: &NewSession<'_>) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(session.id_hash)
        .bind(session.user_id)
        .bind(session.csrf_token)
        .bind(session.now)
        .execute(pool)
        .await
        .map(drop)
    })
    .map_err(|e| on_foreign_key(e, "user"))
}

/// The session with this id digest, live or not.
pub async fn find(store: &Store, id_hash: &str) -> Result<Option<SessionRow>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, SessionRow>(
            "SELECT s.id_hash, s.user_id, u.role, s.csrf_token, s.created_at, s.last_seen_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(pool)
        .await
    })?)
}

/// Records that the session was used at `now`.
pub async fn touch(store: &Store, id_hash: &str, now: i64) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(now)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// Deletes the session (logout, or found expired). Returns whether it existed.
pub async fn delete(store: &Store, id_hash: &str) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(pool)
            .await
            .map(|d| d.rows_affected())
    })?;
    Ok(done > 0)
}
