//! API keys: stored as a digest with a short hint, scoped, listed without the secret,
//! revoked by setting `revoked_at` (a revoked key stays for the record but never matches).

use crate::{Result, Store, on_foreign_key, on_pool, on_unique};

/// A key as its owner sees it (no digest).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRow {
    /// The key's id.
    pub id: String,
    /// The owner's label.
    pub name: String,
    /// The first characters of the key.
    pub key_hint: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

/// A key to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey<'a> {
    /// The key's id.
    pub id: &'a str,
    /// The owner.
    pub user_id: &'a str,
    /// The owner's label.
    pub name: &'a str,
    /// The digest of the secret.
    pub key_hash: &'a str,
    /// The first characters of the secret.
    pub key_hint: &'a str,
    /// Space-separated scopes.
    pub scopes: &'a str,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

/// Who a live key speaks for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyOwner {
    /// The key's id.
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// The owner's current role.
    pub role: String,
    /// Space-separated scopes.
    pub scopes: String,
}

/// Stores a key. A digest already stored is `Conflict("key")`; an owner that no longer
/// exists is `MissingReference("user")`.
pub async fn insert(store: &Store, key: &NewKey<'_>) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, key_hash, key_hint, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id)
        .bind(key.user_id)
        .bind(key.name)
        .bind(key.key_hash)
        .bind(key.key_hint)
        .bind(key.scopes)
        .bind(key.created_at)
        .execute(pool)
        .await
        .map(drop)
    })
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => on_unique(e, "key"),
        _ => on_foreign_key(e, "user"),
    })
}

/// How many unrevoked keys `user_id` holds.
pub async fn count_live(store: &Store, user_id: &str) -> Result<i64> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(user_id)
            .fetch_one(pool)
            .await
    })?)
}

/// The unrevoked keys of `user_id`, oldest first.
pub async fn list_live(store: &Store, user_id: &str) -> Result<Vec<KeyRow>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, KeyRow>(
            "SELECT id, name, key_hint, scopes, created_at FROM api_keys \
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await
    })?)
}

/// The owner of the unrevoked key with digest `key_hash`.
pub async fn find_live(store: &Store, key_hash: &str) -> Result<Option<KeyOwner>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, KeyOwner>(
            "SELECT k.id, k.user_id, u.role, k.scopes FROM api_keys k \
             JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(pool)
        .await
    })?)
}

/// Revokes key `id` of `user_id` at `now`. Returns `false` when there is no such live key
/// (unknown, someone else's, or revoked already).
pub async fn revoke(store: &Store, user_id: &str, id: &str, now: i64) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(user_id)
        .bind(now)
        .execute(pool)
        .await
        .map(|d| d.rows_affected())
    })?;
    Ok(done > 0)
}
