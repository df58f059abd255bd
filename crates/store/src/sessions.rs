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

/// A session as its owner is shown it (never its CSRF token).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionSummary {
    /// The digest of the session id: how the owner names it to end it.
    pub id_hash: String,
    /// Login time, Unix ms.
    pub created_at: i64,
    /// Last use, Unix ms.
    pub last_seen_at: i64,
    /// The browser's `User-Agent` at login, if known.
    pub user_agent: Option<String>,
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
    /// The browser's `User-Agent`, if it sent one (the caller bounds its length).
    pub user_agent: Option<&'a str>,
    /// Login time, Unix ms (also the first "last seen").
    pub now: i64,
}

/// Stores a new session. An owner that no longer exists is `MissingReference("user")`.
pub async fn insert(store: &Store, session: &NewSession<'_>) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, \
             user_agent) VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(session.id_hash)
        .bind(session.user_id)
        .bind(session.csrf_token)
        .bind(session.now)
        .bind(session.user_agent)
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

/// The sessions of `user_id`, most recently used first (at most 100; live or not: the
/// caller applies its timeouts).
pub async fn list_for_user(store: &Store, user_id: &str) -> Result<Vec<SessionSummary>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, SessionSummary>(
            "SELECT id_hash, created_at, last_seen_at, user_agent FROM sessions \
             WHERE user_id = $1 ORDER BY last_seen_at DESC, id_hash LIMIT 100",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await
    })?)
}

/// Deletes session `id_hash` if `user_id` owns it. Returns whether it did: another
/// person's session is left alone, as if it did not exist.
pub async fn delete_owned(store: &Store, user_id: &str, id_hash: &str) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1 AND user_id = $2")
            .bind(id_hash)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|d| d.rows_affected())
    })?;
    Ok(done > 0)
}

/// Deletes every session of `user_id` but `keep`. Returns how many ended.
pub async fn delete_others(store: &Store, user_id: &str, keep: &str) -> Result<u64> {
    Ok(on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(user_id)
            .bind(keep)
            .execute(pool)
            .await
            .map(|d| d.rows_affected())
    })?)
}
