//! Password-reset tokens: single use, stored by digest, each valid until its `expires_at`.
//! Spending a token, setting the new password and revoking the account's sessions and
//! refresh families happen in one transaction ([`reset_password`]).

use crate::users::replace_password;
use crate::{Result, Store, on_foreign_key, on_pool};

/// Stores a reset token for `user_id`. An account that no longer exists is
/// `MissingReference("user")`.
pub async fn insert(
    store: &Store,
    token_hash: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(pool)
        .await
        .map(drop)
    })
    .map_err(|e| on_foreign_key(e, "user"))
}

/// The account of the token with digest `token_hash` if the token is live at `now`
/// (unused and unexpired).
pub async fn live_user(store: &Store, token_hash: &str, now: i64) -> Result<Option<String>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_scalar(
            "SELECT user_id FROM password_resets \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(pool)
        .await
    })?)
}

/// Spends the token with digest `token_hash` if it is live at `now` and belongs to
/// `user_id`, and in the same transaction sets the account's password hash to `new_hash`
/// and revokes every session and refresh family of the account. Returns `false` (nothing
/// written) when the token is not live: of two confirmations with one token, one wins.
pub async fn reset_password(
    store: &Store,
    token_hash: &str,
    user_id: &str,
    new_hash: &str,
    now: i64,
) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            let spent = sqlx::query(
                "UPDATE password_resets SET used_at = $3 \
                 WHERE token_hash = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > $3",
            )
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if spent != 1 || !replace_password!(tx, user_id, new_hash, None::<&str>, now)? {
                tx.rollback().await?;
                return Ok(false);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        }
        .await
    })?;
    Ok(done)
}
