//! Multi-factor sign-in: TOTP enrolments, recovery codes, pending second steps
//! (challenges) and the roles that must use a second factor.
//!
//! Replay is refused here, not in memory: accepting a code raises the enrolment's
//! `last_step` in one conditional update, so two instances (or two requests racing) can
//! never both accept the same code.

use crate::{Result, Store, on_pool};

/// An account's TOTP enrolment.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TotpRow {
    /// The shared secret, base32 (RFC 4648, no padding).
    pub secret: String,
    /// When the first code was accepted; `None` while the enrolment awaits it.
    pub confirmed_at: Option<i64>,
    /// The highest time step whose code was accepted (-1 before any).
    pub last_step: i64,
}

/// A pending second step.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChallengeRow {
    /// Whose password was checked.
    pub user_id: String,
    /// What to issue once the second step passes: `token`, `session` or `enrol`.
    pub kind: String,
}

/// `user_id`'s enrolment, confirmed or not.
pub async fn find(store: &Store, user_id: &str) -> Result<Option<TotpRow>> {
    Ok(on_pool!(store, write, pool => {
        sqlx::query_as::<_, TotpRow>(
            "SELECT secret, confirmed_at, last_step FROM mfa_totp WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(pool)
        .await
    })?)
}

/// Starts (or restarts) an enrolment with `secret`. Returns `false`, changing nothing, when
/// the account already has a confirmed one: that one must be disabled first.
pub async fn start_enrolment(store: &Store, user_id: &str, secret: &str, now: i64) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO mfa_totp (user_id, secret, confirmed_at, last_step, created_at) \
             VALUES ($1, $2, NULL, -1, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
             created_at = excluded.created_at, last_step = -1 \
             WHERE mfa_totp.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(secret)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(done == 1)
}

/// Confirms a pending enrolment whose code of `step` was accepted, replacing any
/// recovery codes by `recovery_hashes`, in one transaction. `false` if there was no
/// pending enrolment (none, or confirmed meanwhile).
pub async fn confirm(
    store: &Store,
    user_id: &str,
    step: i64,
    recovery_hashes: &[String],
    now: i64,
) -> Result<bool> {
    Ok(on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            let confirmed = sqlx::query(
                "UPDATE mfa_totp SET confirmed_at = $2, last_step = $3 \
                 WHERE user_id = $1 AND confirmed_at IS NULL AND last_step < $3",
            )
            .bind(user_id)
            .bind(now)
            .bind(step)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if confirmed != 1 {
                return Ok::<_, sqlx::Error>(false);
            }
            sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for hash in recovery_hashes {
                sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await
    })?)
}

/// Records that the confirmed enrolment's code of `step` was used; `false` if a code of
/// this step or a later one was already accepted (a replay).
pub async fn accept_step(store: &Store, user_id: &str, step: i64) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE mfa_totp SET last_step = $2 \
             WHERE user_id = $1 AND confirmed_at IS NOT NULL AND last_step < $2",
        )
        .bind(user_id)
        .bind(step)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(done == 1)
}

/// Spends the recovery code whose digest is `code_hash`; `false` if it is not one of the
/// account's or was used already.
pub async fn use_recovery_code(
    store: &Store,
    user_id: &str,
    code_hash: &str,
    now: i64,
) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE mfa_recovery_codes SET used_at = $3 \
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user_id)
        .bind(code_hash)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(done == 1)
}

/// How many unused recovery codes `user_id` has.
pub async fn recovery_codes_left(store: &Store, user_id: &str) -> Result<i64> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(pool)
        .await
    })?)
}

/// Removes `user_id`'s enrolment and recovery codes, in one transaction.
pub async fn disable(store: &Store, user_id: &str) -> Result<()> {
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await
    })?;
    Ok(())
}

/// Stores a challenge (only the digest of its token).
pub async fn insert_challenge(
    store: &Store,
    id_hash: &str,
    user_id: &str,
    kind: &str,
    expires_at: i64,
    now: i64,
) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO mfa_challenges (id_hash, user_id, kind, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(kind)
        .bind(expires_at)
        .bind(now)
        .execute(pool)
        .await
        .map(drop)
    })?;
    Ok(())
}

/// The challenge whose token digest is `id_hash`, if it has not expired at `now`.
pub async fn find_challenge(
    store: &Store,
    id_hash: &str,
    now: i64,
) -> Result<Option<ChallengeRow>> {
    Ok(on_pool!(store, write, pool => {
        sqlx::query_as::<_, ChallengeRow>(
            "SELECT user_id, kind FROM mfa_challenges WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(pool)
        .await
    })?)
}

/// Spends a challenge; `false` if it was spent already (by a racing request). Expired
/// challenges are removed on the way.
pub async fn spend_challenge(store: &Store, id_hash: &str, now: i64) -> Result<bool> {
    Ok(on_pool!(store, write, pool => {
        async {
            let spent = sqlx::query("DELETE FROM mfa_challenges WHERE id_hash = $1")
                .bind(id_hash)
                .execute(pool)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM mfa_challenges WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?;
            Ok::<_, sqlx::Error>(spent == 1)
        }
        .await
    })?)
}

/// The roles whose members must sign in with a second factor, sorted.
pub async fn required_roles(store: &Store) -> Result<Vec<String>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_scalar::<_, String>("SELECT role FROM mfa_required_roles ORDER BY role")
            .fetch_all(pool)
            .await
    })?)
}

/// Replaces the roles that must use a second factor, in one transaction.
pub async fn set_required_roles(store: &Store, roles: &[&str]) -> Result<()> {
    on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM mfa_required_roles")
                .execute(&mut *tx)
                .await?;
            for role in roles {
                sqlx::query("INSERT INTO mfa_required_roles (role) VALUES ($1)")
                    .bind(*role)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await
    })?;
    Ok(())
}
