//! Where the RabbitMQ backend holds deduplication keys.
//!
//! A held key names the job holding it; taking a key that names the same job changes
//! nothing (the enqueuer and the claimer of a job both take it), and a key names at most one
//! job at a time. Two places can hold them:
//!
//! - [`KeyStore::Broker`]: a marker queue per held key (see the module docs of
//!   [`crate::amqp`]). Nothing but the broker is needed, but every take is a queue
//!   declaration and every release a deletion: changes to the broker's metadata store,
//!   which RabbitMQ makes one after another. Measured with `queue_bench`, keyed jobs ran at
//!   about a seventh of the rate of plain ones, and a backlog of keyed jobs is as many
//!   queues.
//! - [`KeyStore::Postgres`]: one row per held key in `queue_amqp_keys`, in a PostgreSQL
//!   database the deployment already runs (the server passes its own). A take is one
//!   statement on a primary-key index, and a backlog costs rows, not broker objects.

use std::sync::Arc;

use sqlx::PgPool;

use super::backend::Key;
use crate::{Clock, Error, Result};

/// Where deduplication keys are held; see the module docs.
#[derive(Debug, Clone, Default)]
pub enum KeyStore {
    /// Marker queues in the broker.
    #[default]
    Broker,
    /// Rows in `queue_amqp_keys` of this database (installed by
    /// [`AmqpQueue::connect_with`](super::AmqpQueue::connect_with)).
    Postgres(PgPool),
}

fn database(e: sqlx::Error) -> Error {
    Error::Unavailable(format!("deduplication keys: {e}"))
}

/// Installs the key table (with the rest of the queue's tables: one schema history) and
/// drops keys that expired long ago: they only lingered because their release was lost.
pub(super) async fn install(pool: &PgPool, clock: &Arc<dyn Clock>) -> Result<()> {
    let now_ms = clock.now_ms();
    crate::postgres::PostgresQueue::new(pool.clone(), clock.clone())
        .install()
        .await?;
    sqlx::query("DELETE FROM queue_amqp_keys WHERE expires_at < $1")
        .bind(now_ms)
        .execute(pool)
        .await
        .map_err(database)?;
    Ok(())
}

/// Takes `marker` for job `id` until `expires_ms`, or learns which job holds it. An expired
/// key is taken over.
///
/// `likely_held`: the caller expects the key to be held already (a claimed job, whose
/// enqueuer took it). A live key then answers from a read, which commits nothing, so the
/// claim costs no WAL flush; an enqueue, whose key is usually free, goes straight to the
/// insert instead of paying for the read too.
pub(super) async fn take(
    pool: &PgPool,
    marker: &str,
    id: &str,
    (now_ms, expires_ms): (i64, i64),
    likely_held: bool,
) -> Result<Key> {
    if likely_held {
        let live: Option<(String, i64)> =
            sqlx::query_as("SELECT job_id, expires_at FROM queue_amqp_keys WHERE marker = $1")
                .bind(marker)
                .fetch_optional(pool)
                .await
                .map_err(database)?;
        if let Some((holder, expires_at)) = live
            && expires_at >= now_ms
        {
            return Ok(if holder == id {
                Key::Taken
            } else {
                Key::HeldBy(holder)
            });
        }
    }
    // The insert either takes the key or finds a holder; the holder is read in a later
    // statement when a concurrent taker committed it after this statement's snapshot.
    for _ in 0..3 {
        let holder: Option<String> = sqlx::query_scalar(
            "WITH taken AS (
                 INSERT INTO queue_amqp_keys (marker, job_id, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (marker) DO UPDATE
                     SET job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at
                     WHERE queue_amqp_keys.expires_at < $4
                 RETURNING job_id)
             SELECT COALESCE(
                 (SELECT job_id FROM taken),
                 (SELECT job_id FROM queue_amqp_keys WHERE marker = $1))",
        )
        .bind(marker)
        .bind(id)
        .bind(expires_ms)
        .bind(now_ms)
        .fetch_one(pool)
        .await
        .map_err(database)?;
        match holder {
            Some(holder) if holder == id => return Ok(Key::Taken),
            Some(holder) => return Ok(Key::HeldBy(holder)),
            None => continue,
        }
    }
    Err(Error::Unavailable(format!(
        "deduplication key {marker}: neither taken nor held"
    )))
}

/// Frees `marker` if job `id` still holds it. The deletion commits without waiting for
/// its WAL flush: a release lost to a database crash leaves the key held until it expires,
/// which is what a release lost to a worker crash does already, and not waiting keeps the
/// flush off every job's completion.
pub(super) async fn release(pool: &PgPool, marker: &str, id: &str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(database)?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await
        .map_err(database)?;
    sqlx::query("DELETE FROM queue_amqp_keys WHERE marker = $1 AND job_id = $2")
        .bind(marker)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(database)?;
    tx.commit().await.map_err(database)
}

/// Frees every key of namespace `ns` (teardown).
pub(super) async fn release_namespace(pool: &PgPool, ns: &str) -> Result<()> {
    sqlx::query("DELETE FROM queue_amqp_keys WHERE starts_with(marker, $1)")
        .bind(format!("{ns}.key."))
        .execute(pool)
        .await
        .map_err(database)?;
    Ok(())
}
