//! Refresh tokens, stored by digest, in families: a login starts a family, and each refresh
//! spends one token and adds the next to the same family. A spent token presented again
//! means it was copied, so its whole family is revoked ([`revoke_family_of`]).
//!
//! Each rule that takes several statements runs in one transaction here, so no crash or
//! concurrent request sees half of it.

use crate::{Result, Store, on_foreign_key, on_pool};

/// Inserts one token into a family inside the transaction `$tx` (a macro, so it serves the
/// transaction of either engine).
macro_rules! insert_token {
    ($tx:expr, $family_id:expr, $user_id:expr, $token:expr) => {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($token.token_hash)
        .bind($family_id)
        .bind($user_id)
        .bind($token.issued_at)
        .bind($token.expires_at)
        .execute(&mut *$tx)
        .await
    };
}

/// A refresh token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken<'a> {
    /// The digest of the token (the token itself is only given to the client).
    pub token_hash: &'a str,
    /// Issue time, Unix ms.
    pub issued_at: i64,
    /// When it stops being accepted, Unix ms.
    pub expires_at: i64,
}

/// Where a spent token led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The family of the spent token (and of its successor).
    pub family_id: String,
    /// The owner.
    pub user_id: String,
}

/// A family revoked through one of its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedFamily {
    /// The family.
    pub family_id: String,
    /// The owner.
    pub user_id: String,
    /// Whether the presented token had been spent already (a reuse: likely theft).
    pub token_was_spent: bool,
}

/// Starts family `family_id` for `user_id` with its first token (a login). An account that
/// no longer exists is `MissingReference("user")`.
pub async fn start_family(
    store: &Store,
    family_id: &str,
    user_id: &str,
    first: &NewToken<'_>,
) -> Result<()> {
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO refresh_families (id, user_id, created_at) VALUES ($1, $2, $3)")
                .bind(family_id)
                .bind(user_id)
                .bind(first.issued_at)
                .execute(&mut *tx)
                .await?;
            insert_token!(tx, family_id, user_id, first)?;
            tx.commit().await
        }
        .await
    })
    .map_err(|e| on_foreign_key(e, "user"))
}

/// Spends the token with digest `spent_hash` if it is live at `now` (unspent, unexpired, in a
/// family not revoked) and adds `next` to its family, in one transaction. `None` (and nothing
/// written) when the token is not live; of two concurrent rotations of one token exactly
/// one succeeds, because the spend is a single conditional update.
pub async fn rotate(
    store: &Store,
    spent_hash: &str,
    next: &NewToken<'_>,
    now: i64,
) -> Result<Option<Rotation>> {
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            let spent: Option<(String, String)> = sqlx::query_as(
                "UPDATE refresh_tokens SET spent_at = $2 \
                 WHERE token_hash = $1 AND spent_at IS NULL AND expires_at > $2 \
                   AND family_id IN (SELECT id FROM refresh_families WHERE revoked_at IS NULL) \
                 RETURNING family_id, user_id",
            )
            .bind(spent_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((family_id, user_id)) = spent else {
                tx.rollback().await?;
                return Ok(None);
            };
            insert_token!(tx, &family_id, &user_id, next)?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(Rotation { family_id, user_id }))
        }
        .await
    })
    .map_err(|e| on_foreign_key(e, "user"))
}

/// Revokes the family of the token with digest `hash` (logout, or a reuse found by a failed
/// rotation). `None` when no such token was ever issued.
pub async fn revoke_family_of(
    store: &Store,
    hash: &str,
    now: i64,
) -> Result<Option<RevokedFamily>> {
    let revoked = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            let found: Option<(String, String, Option<i64>)> = sqlx::query_as(
                "SELECT family_id, user_id, spent_at FROM refresh_tokens WHERE token_hash = $1",
            )
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((family_id, user_id, spent_at)) = found else {
                tx.rollback().await?;
                return Ok(None);
            };
            sqlx::query("UPDATE refresh_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(&family_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(RevokedFamily {
                family_id,
                user_id,
                token_was_spent: spent_at.is_some(),
            }))
        }
        .await
    })?;
    Ok(revoked)
}

/// Whether family `family_id` is revoked (`None`: no such family).
pub async fn family_revoked(store: &Store, family_id: &str) -> Result<Option<bool>> {
    let revoked_at: Option<Option<i64>> = on_pool!(store, read, pool => {
        sqlx::query_scalar("SELECT revoked_at FROM refresh_families WHERE id = $1")
            .bind(family_id)
            .fetch_optional(pool)
            .await
    })?;
    Ok(revoked_at.map(|at| at.is_some()))
}
