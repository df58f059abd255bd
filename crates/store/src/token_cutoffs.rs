//! Per-account cutoffs for access tokens: a token issued before its account's
//! `valid_after` is no longer honoured. The server keeps them in memory and reloads the
//! recent ones from here.

use crate::{Result, Store, on_pool};

/// Sets `user_id`'s cutoff to `at` (Unix ms), never moving an existing one back.
pub async fn raise(store: &Store, user_id: &str, at: i64) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO token_cutoffs (user_id, valid_after) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET valid_after = excluded.valid_after \
             WHERE token_cutoffs.valid_after < excluded.valid_after",
        )
        .bind(user_id)
        .bind(at)
        .execute(pool)
        .await
        .map(drop)
    })?;
    Ok(())
}

/// Every cutoff later than `since` (Unix ms), as `(user_id, valid_after)`.
pub async fn since(store: &Store, since: i64) -> Result<Vec<(String, i64)>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT user_id, valid_after FROM token_cutoffs WHERE valid_after > $1",
        )
        .bind(since)
        .fetch_all(pool)
        .await
    })?)
}

/// Removes cutoffs at or before `before` (Unix ms): every token they could refuse has
/// expired. Returns how many were removed.
pub async fn purge(store: &Store, before: i64) -> Result<u64> {
    Ok(on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM token_cutoffs WHERE valid_after <= $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?)
}

/// Signs `user_id` out everywhere at `now` (Unix ms), in one transaction: every session
/// deleted, every refresh family revoked, and the access-token cutoff raised to `now`.
pub async fn sign_out_everywhere(store: &Store, user_id: &str, now: i64) -> Result<()> {
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE refresh_families SET revoked_at = $2 \
                 WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO token_cutoffs (user_id, valid_after) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET valid_after = excluded.valid_after \
                 WHERE token_cutoffs.valid_after < excluded.valid_after",
            )
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await
    })?;
    Ok(())
}
