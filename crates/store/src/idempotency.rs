//! Stored responses of POSTs that carried an `Idempotency-Key`, so a retry with the same key
//! gets the first response instead of a second resource. Kept in the database, so a retry
//! that reaches another instance is answered the same way; expired keys are reclaimed by
//! the next request that uses them, and deleted in bulk by [`purge_expired`].

use crate::{Result, Store, on_pool};

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRow {
    /// SHA-256 of the first request (method, path, body).
    pub fingerprint: String,
    /// The first response's status; `None` while that request is still running.
    pub status: Option<i32>,
    /// Its `Location` header.
    pub location: Option<String>,
    /// Its body.
    pub body: Option<Vec<u8>>,
}

/// Claims `key` for `scope` until `expires_at`: `Ok(None)` when the caller now owns it (a new
/// key, or one whose previous use expired), else what the key already holds.
pub async fn claim(
    store: &Store,
    scope: &str,
    key: &str,
    fingerprint: &str,
    now: i64,
    expires_at: i64,
) -> Result<Option<KeyRow>> {
    claim_or_take_over(store, scope, key, fingerprint, now, expires_at, i64::MIN).await
}

/// [`claim`], which also takes over an unfinished claim of the same request (same
/// fingerprint) made before `orphaned_before`: its process died or dropped the request.
/// Only for requests whose effect is itself keyed, since the first run may have committed.
pub async fn claim_or_take_over(
    store: &Store,
    scope: &str,
    key: &str,
    fingerprint: &str,
    now: i64,
    expires_at: i64,
    orphaned_before: i64,
) -> Result<Option<KeyRow>> {
    let claimed: Option<i64> = on_pool!(store, write, pool => {
        sqlx::query_scalar(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
             status = NULL, location = NULL, body = NULL, created_at = excluded.created_at, \
             expires_at = excluded.expires_at WHERE idempotency_keys.expires_at <= $4 \
             OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < $6 \
                 AND idempotency_keys.fingerprint = excluded.fingerprint) \
             RETURNING created_at",
        )
        .bind(scope)
        .bind(key)
        .bind(fingerprint)
        .bind(now)
        .bind(expires_at)
        .bind(orphaned_before)
        .fetch_optional(pool)
        .await
    })?;
    if claimed.is_some() {
        return Ok(None);
    }
    let held = on_pool!(store, write, pool => {
        sqlx::query_as::<_, KeyRow>(
            "SELECT fingerprint, status, location, body FROM idempotency_keys \
             WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(pool)
        .await
    })?;
    // Gone between the two statements (purged): report it as in progress; a retry claims it.
    Ok(Some(held.unwrap_or(KeyRow {
        fingerprint: fingerprint.to_owned(),
        status: None,
        location: None,
        body: None,
    })))
}

/// Stores the response of the request that claimed `key`.
pub async fn complete(
    store: &Store,
    scope: &str,
    key: &str,
    status: i32,
    location: Option<&str>,
    body: &[u8],
) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $3, location = $4, body = $5 \
             WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .bind(status)
        .bind(location)
        .bind(body)
        .execute(pool)
        .await
        .map(drop)
    })?;
    Ok(())
}

/// Forgets `key` (its request failed, so a retry should run it again).
pub async fn release(store: &Store, scope: &str, key: &str) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
            .bind(scope)
            .bind(key)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// Deletes every key expired at `now`, returning how many.
pub async fn purge_expired(store: &Store, now: i64) -> Result<u64> {
    let done = on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(done)
}
