//! Webhooks: the endpoints users register and the log of every delivery to them.
//!
//! A delivery row is made by [`fan_out`] when the outbox's event reaches the webhook
//! consumer, in the same transaction as the consumer's processed-event record, so a
//! redelivered event makes no second delivery. Its `body` is the exact JSON sent (and
//! signed) at every attempt. [`record_attempt`] moves it on, fenced by the attempt count,
//! so two workers holding the same delivery cannot both record an attempt.

use serde::Serialize;

use crate::outbox::OutboxConn;
use crate::{Result, Store, on_pool};

/// A registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct Webhook {
    /// The endpoint's id.
    pub id: i64,
    /// Whose links it hears about.
    pub owner_id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event kinds it receives, space-separated.
    pub events: String,
    /// The signing secret (never shown back).
    #[serde(skip)]
    pub secret: String,
    /// Unix ms.
    pub created_at: i64,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct Delivery {
    /// The delivery's id.
    pub id: i64,
    /// The endpoint.
    pub webhook_id: i64,
    /// The outbox event it carries.
    pub event_id: i64,
    /// The event kind.
    pub kind: String,
    /// The JSON body sent.
    pub body: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the next attempt is due (Unix ms), while pending.
    pub next_attempt_at: i64,
    /// The HTTP status of the last attempt, if one answered.
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// When it was delivered or given up (Unix ms).
    pub finished_at: Option<i64>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The endpoint answered 2xx.
    Delivered {
        /// Its status.
        status: i32,
    },
    /// It failed; try again at `next_at`.
    Retry {
        /// The status, if it answered.
        status: Option<i32>,
        /// Why it failed.
        error: String,
        /// When to try again (Unix ms).
        next_at: i64,
    },
    /// It failed for the last time: the delivery is dead-lettered.
    Dead {
        /// The status, if it answered.
        status: Option<i32>,
        /// Why it failed.
        error: String,
    },
}

/// Registers an endpoint.
pub async fn create(
    store: &Store,
    owner_id: &str,
    url: &str,
    events: &[&str],
    secret: &str,
    now: i64,
) -> Result<Webhook> {
    let events = events.join(" ");
    let row = on_pool!(store, write, pool => {
        sqlx::query_as(
            "INSERT INTO webhooks (owner_id, url, events, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING *",
        )
        .bind(owner_id)
        .bind(url)
        .bind(&events)
        .bind(secret)
        .bind(now)
        .fetch_one(pool)
        .await
    })?;
    Ok(row)
}

/// One endpoint.
pub async fn get(store: &Store, id: i64) -> Result<Option<Webhook>> {
    Ok(on_pool!(store, write, pool => {
        sqlx::query_as("SELECT * FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
    })?)
}

/// `owner`'s endpoints with an id above `after`, oldest first, at most `limit`.
pub async fn list(store: &Store, owner_id: &str, after: i64, limit: i64) -> Result<Vec<Webhook>> {
    Ok(on_pool!(store, read, pool => {
        sqlx::query_as(
            "SELECT * FROM webhooks WHERE owner_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(owner_id)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await
    })?)
}

/// Removes an endpoint and its delivery log; false when there was none.
pub async fn delete(store: &Store, id: i64) -> Result<bool> {
    let done = on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(done == 1)
}

/// Endpoint `webhook_id`'s deliveries with an id below `before` (newest first), at most
/// `limit`.
pub async fn deliveries(
    store: &Store,
    webhook_id: i64,
    before: i64,
    limit: i64,
) -> Result<Vec<Delivery>> {
    Ok(on_pool!(store, write, pool => {
        sqlx::query_as(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(webhook_id)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await
    })?)
}

/// One delivery with its endpoint.
pub async fn delivery(store: &Store, id: i64) -> Result<Option<(Delivery, Webhook)>> {
    let found: Option<Delivery> = on_pool!(store, write, pool => {
        sqlx::query_as("SELECT * FROM webhook_deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
    })?;
    let Some(delivery) = found else {
        return Ok(None);
    };
    Ok(get(store, delivery.webhook_id)
        .await?
        .map(|w| (delivery, w)))
}

/// `consumer` receives event `event_id` of `kind` about `owner_id`'s link: one pending
/// delivery of `body` per endpoint of that owner subscribed to `kind`, made in the same
/// transaction as the processed-event record. Returns the pending deliveries of the event
/// as `(id, next attempt, attempts)` (also on a redelivery, so the caller can make sure
/// each has a job).
pub async fn fan_out(
    store: &Store,
    consumer: &str,
    event_id: i64,
    kind: &str,
    owner_id: &str,
    body: &str,
    now: i64,
) -> Result<Vec<(i64, i64, i32)>> {
    let rows = on_pool!(store, write, pool => {
        async {
            let mut tx = pool.begin().await?;
            if tx.mark_processed(consumer, event_id, now).await? {
                sqlx::query(
                    "INSERT INTO webhook_deliveries (webhook_id, event_id, kind, body, status, \
                     next_attempt_at, created_at) \
                     SELECT id, $1, $2, $3, 'pending', $4, $4 FROM webhooks \
                     WHERE owner_id = $5 AND (' ' || events || ' ') LIKE ('% ' || $2 || ' %')",
                )
                .bind(event_id)
                .bind(kind)
                .bind(body)
                .bind(now)
                .bind(owner_id)
                .execute(&mut *tx)
                .await?;
            }
            let pending: Vec<(i64, i64, i32)> = sqlx::query_as(
                "SELECT id, next_attempt_at, attempts FROM webhook_deliveries \
                 WHERE event_id = $1 AND status = 'pending' ORDER BY id",
            )
            .bind(event_id)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(pending)
        }
        .await
    })?;
    Ok(rows)
}

/// Records attempt number `attempts + 1` of delivery `id`; false when another attempt was
/// recorded first (the caller's view is stale) or the delivery is no longer pending.
pub async fn record_attempt(
    store: &Store,
    id: i64,
    attempts: i32,
    outcome: &Attempt,
    now: i64,
) -> Result<bool> {
    let (status, next_at, last_status, error, finished) = match outcome {
        Attempt::Delivered { status } => ("delivered", now, Some(*status), None, Some(now)),
        Attempt::Retry {
            status,
            error,
            next_at,
        } => ("pending", *next_at, *status, Some(error.as_str()), None),
        Attempt::Dead { status, error } => ("dead", now, *status, Some(error.as_str()), Some(now)),
    };
    let done = on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, \
             next_attempt_at = $4, last_status = $5, last_error = $6, finished_at = $7 \
             WHERE id = $1 AND attempts = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(attempts)
        .bind(status)
        .bind(next_at)
        .bind(last_status)
        .bind(error)
        .bind(finished)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(done == 1)
}

/// Pending deliveries due by `now` (the sweep that re-enqueues any whose job was lost),
/// oldest first, at most `limit`: `(id, next_attempt_at, attempts)`.
pub async fn due(store: &Store, now: i64, limit: i64) -> Result<Vec<(i64, i64, i32)>> {
    Ok(on_pool!(store, write, pool => {
        sqlx::query_as(
            "SELECT id, next_attempt_at, attempts FROM webhook_deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await
    })?)
}
