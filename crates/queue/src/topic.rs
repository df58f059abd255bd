//! Publishing a batch of messages to a topic on the SQL engines: every message becomes one
//! job on each subscriber group's queue, all of them written by one statement (SQLite: one
//! per [`SQLITE_CHUNK`](crate::batch::SQLITE_CHUNK) messages, in one transaction).
//!
//! A group subscribed to some kinds only (`queue_subscriptions.kinds`: a JSON array on
//! SQLite, a `text[]` on PostgreSQL, NULL for every kind) is skipped by the fan-out for the
//! other kinds, so its queue never fills with work its consumer would only throw away.
//!
//! A publisher that sends its messages one by one pays a round trip, and on SQLite a turn
//! at the single writer connection, per message; behind a busy writer that turn is the
//! whole cost. One statement per batch pays it once.

use sqlx::Row as _;
use tracing::Instrument as _;

use crate::batch::wake_each;
use crate::postgres::PostgresQueue;
use crate::sqlite::SqliteQueue;
use crate::{Backend as _, Error, Message, NewJob, Result, trace, validate};

/// Checks a subscription and gives the kind list to store: sorted, without repeats, and
/// `None` (every kind) for an empty one.
pub(crate) fn subscription_kinds(
    topic: &str,
    group: &str,
    kinds: &[&str],
) -> Result<Option<Vec<String>>> {
    if topic.is_empty() || group.is_empty() {
        return Err(Error::Invalid("topic and group must not be empty".into()));
    }
    if kinds.iter().any(|k| k.trim().is_empty() || k.len() > 200) {
        return Err(Error::Invalid(
            "a subscribed kind must have 1 to 200 characters".into(),
        ));
    }
    if kinds.is_empty() {
        return Ok(None);
    }
    let kinds: std::collections::BTreeSet<&str> = kinds.iter().copied().collect();
    Ok(Some(kinds.into_iter().map(str::to_owned).collect()))
}

/// Refuses the batch if any message's kind could not be a job's (before anything is sent).
pub(crate) fn validate_all(topic: &str, messages: &[Message]) -> Result<()> {
    for m in messages {
        validate(&NewJob::new(topic, &m.kind, serde_json::Value::Null))?;
    }
    Ok(())
}

/// Checks the batch, then gives the publish's span and its context (which messages without
/// one of their own continue); `None` for an empty batch, which writes nothing.
fn start(
    system: &'static str,
    topic: &str,
    messages: &[Message],
) -> Result<Option<(tracing::Span, Option<String>)>> {
    validate_all(topic, messages)?;
    let Some(first) = messages.first() else {
        return Ok(None);
    };
    let span = trace::enqueue_span(system, topic, &first.kind, messages.len());
    let context = trace::traceparent(&span);
    Ok(Some((span, context)))
}

pub(crate) async fn sqlite_publish_many(
    q: &SqliteQueue,
    topic: &str,
    messages: &[Message],
) -> Result<usize> {
    let Some((span, own)) = start(q.name(), topic, messages)? else {
        return Ok(0);
    };
    let queues = sqlite_insert(q, topic, messages, own.as_deref())
        .instrument(span)
        .await?;
    wake_each(queues.iter().map(String::as_str), |queue| q.wake(queue));
    Ok(messages.len())
}

async fn sqlite_insert(
    q: &SqliteQueue,
    topic: &str,
    messages: &[Message],
    own: Option<&str>,
) -> Result<Vec<String>> {
    let now = q.now_ms();
    let mut tx = q.pool().begin_with("BEGIN IMMEDIATE").await?;
    let mut queues = Vec::new();
    for chunk in messages.chunks(crate::batch::SQLITE_CHUNK) {
        // The sequence number keeps the messages' order in the jobs' ids, which is the
        // order a queue hands out jobs due at the same time.
        let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "WITH m (seq, kind, payload, traceparent) AS (VALUES {values})
             INSERT INTO queue_jobs (queue, kind, payload, status, max_attempts, run_at,
                 enqueued_at, traceparent)
             SELECT s.topic || '.' || s.grp, m.kind, m.payload, 'queued', 5, ?, ?, m.traceparent
             FROM m JOIN queue_subscriptions s ON s.topic = ? AND (s.kinds IS NULL
                 OR EXISTS (SELECT 1 FROM json_each(s.kinds) WHERE json_each.value = m.kind))
             ORDER BY m.seq, s.grp
             RETURNING queue"
        );
        let mut query = sqlx::query(&sql);
        for (seq, m) in chunk.iter().enumerate() {
            query = query
                .bind(seq as i64)
                .bind(&m.kind)
                .bind(m.payload.to_string())
                .bind(m.traceparent.as_deref().or(own));
        }
        for row in query
            .bind(now)
            .bind(now)
            .bind(topic)
            .fetch_all(&mut *tx)
            .await?
        {
            queues.push(row.try_get::<String, _>(0)?);
        }
    }
    tx.commit().await?;
    Ok(queues)
}

pub(crate) async fn postgres_publish_many(
    q: &PostgresQueue,
    topic: &str,
    messages: &[Message],
) -> Result<usize> {
    let Some((span, own)) = start(q.name(), topic, messages)? else {
        return Ok(0);
    };
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
    let payloads: Vec<String> = messages.iter().map(|m| m.payload.to_string()).collect();
    let parents: Vec<Option<&str>> = messages
        .iter()
        .map(|m| m.traceparent.as_deref().or(own.as_deref()))
        .collect();
    let queues: Vec<String> = sqlx::query_scalar(
        "INSERT INTO queue_jobs (queue, kind, payload, status, max_attempts, run_at, enqueued_at,
             traceparent)
         SELECT s.topic || '.' || s.grp, m.kind, m.payload::jsonb, 'queued', 5, $5, $5,
             m.traceparent
         FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY
             AS m(kind, payload, traceparent, seq)
         JOIN queue_subscriptions s ON s.topic = $1 AND (s.kinds IS NULL OR m.kind = ANY (s.kinds))
         ORDER BY m.seq, s.grp
         RETURNING queue",
    )
    .bind(topic)
    .bind(&kinds)
    .bind(&payloads)
    .bind(&parents)
    .bind(q.now_ms())
    .fetch_all(q.pool())
    .instrument(span)
    .await?;
    wake_each(queues.iter().map(String::as_str), |queue| q.wake(queue));
    Ok(messages.len())
}
