//! The transactional outbox: events that other parts of the system must hear about, written
//! in the same transaction as the change they announce, then moved to the queue by a relay.
//!
//! # Why the outbox lives in the store
//!
//! Every writer that announces something (links here, the ledger's transfers, the shop's
//! orders) already holds a transaction of this database, and each of those crates depends on
//! this one. One `outbox` table in the database they share, written through [`append`] with
//! the writer's own connection, means one design and one relay for all of them; the event
//! commits or rolls back with the change, so no event is ever announced for a change that did
//! not happen, nor lost for one that did. The relay itself (which publishes to the queue) is
//! in the server, which composes the store with the queue.
//!
//! # What the relay may read, and why it never skips a late commit
//!
//! [`pending`] returns the oldest rows in id order, and the relay deletes a row once the queue
//! has it ([`delete`]): a row that commits late is simply found by a later pass, since
//! nothing is remembered as "already read past". Order per aggregate is the harder part. A
//! writer locks its aggregate (the link, the transfer's accounts, the order's saga row)
//! before it appends, so two events of one aggregate get ids in commit order. On SQLite there
//! is one writer at a time: commit order is id order, and AUTOINCREMENT never reuses an id,
//! so every committed row is visible in order. On PostgreSQL ids are taken at insert and
//! become visible at commit, in any order: a row with a smaller id may still be in flight
//! while a larger one is visible. Each row stores its transaction id (`pg_current_xact_id()`),
//! and [`pending`] returns only the prefix of rows (in id order) whose transaction id is below
//! the snapshot's `xmin` (`pg_snapshot_xmin(pg_current_snapshot())`), every transaction below
//! it having ended. It stops at the first row at or above the horizon, even a committed one,
//! so a later row of the same aggregate is never published before it. The price: a write
//! transaction left open anywhere in the cluster (or a prepared transaction) holds the relay
//! back, never the writers, until it ends; the outbox lag metric shows it.
//!
//! # Consumers
//!
//! Delivery is at least once (a relay that crashes between the publish and the delete
//! publishes again). A consumer records the events it applied in `processed_events`
//! ([`first_delivery`], or [`OutboxConn::mark_processed`] inside its own transaction, so the
//! record and the effect commit together) and ignores an id it has seen. A consumer whose
//! effect leaves the database (a mail) checks with [`was_processed`] first and records after
//! the effect: at least once, and once in normal operation.

use std::future::Future;

use serde::Serialize;
use sqlx::{PgConnection, SqliteConnection};

use crate::{Result, Store, on_pool};

/// An event to append, as its writer describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What happened, dotted (`link.created`, `transfer.posted`, `order.confirmed`).
    pub kind: &'static str,
    /// The aggregate it belongs to (`link:42`); events of one aggregate keep their order.
    pub aggregate: String,
    /// The event's data.
    pub payload: serde_json::Value,
    /// When it happened (Unix ms).
    pub at: i64,
}

/// A stored event, waiting for the relay.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct OutboxRow {
    /// The event id: increasing in commit order per aggregate, never reused.
    pub id: i64,
    /// What happened.
    pub kind: String,
    /// The aggregate it belongs to.
    pub aggregate: String,
    /// The event's data, JSON text.
    pub payload: String,
    /// When it was written (Unix ms).
    pub created_at: i64,
    /// The writer's trace context (W3C `traceparent`), when its spans were exported.
    pub traceparent: Option<String>,
}

/// A row as PostgreSQL's relay query reads it: whether every transaction that could have
/// written an earlier row has ended.
#[derive(sqlx::FromRow)]
struct Pending {
    #[sqlx(flatten)]
    row: OutboxRow,
    settled: bool,
}

/// The trace context of the span the writer is in, as a W3C `traceparent`; `None` when spans
/// are not exported (the span is disabled, or has no valid context).
fn writer_trace() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier)
    });
    carrier.remove("traceparent")
}

/// Rows per `INSERT` in [`OutboxConn::append_many`] (5 parameters each).
const ROWS_PER_INSERT: usize = 1000;

/// A connection (or transaction) of either engine that outbox rows can be written on.
/// Writers call these with the connection of the transaction that makes the change.
pub trait OutboxConn: Send {
    /// Appends `events`, in order, in the connection's current transaction.
    fn append_many(&mut self, events: &[NewEvent])
    -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Records that `consumer` applied event `event_id`; false when it already had.
    fn mark_processed(
        &mut self,
        consumer: &str,
        event_id: i64,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<bool>> + Send;
}

macro_rules! outbox_conn {
    ($Conn:ty, $engine:expr) => {
        impl OutboxConn for $Conn {
            async fn append_many(&mut self, events: &[NewEvent]) -> sqlx::Result<()> {
                let traceparent = writer_trace();
                for chunk in events.chunks(ROWS_PER_INSERT) {
                    let sql = format!(
                        "INSERT INTO outbox (kind, aggregate, payload, created_at, traceparent) \
                         VALUES {}",
                        crate::links::placeholders($engine, chunk.len(), 5)
                    );
                    let mut query = sqlx::query(&sql);
                    for e in chunk {
                        query = query
                            .bind(e.kind)
                            .bind(&e.aggregate)
                            .bind(e.payload.to_string())
                            .bind(e.at)
                            .bind(traceparent.as_deref());
                    }
                    query.execute(&mut *self).await?;
                }
                Ok(())
            }

            async fn mark_processed(
                &mut self,
                consumer: &str,
                event_id: i64,
                now: i64,
            ) -> sqlx::Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO processed_events (consumer, event_id, processed_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (consumer, event_id) DO NOTHING",
                )
                .bind(consumer)
                .bind(event_id)
                .bind(now)
                .execute(&mut *self)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

outbox_conn!(SqliteConnection, crate::Engine::Sqlite);
outbox_conn!(PgConnection, crate::Engine::Postgres);

/// Appends one event in the transaction behind `conn`.
pub async fn append<C: OutboxConn + ?Sized>(conn: &mut C, event: &NewEvent) -> sqlx::Result<()> {
    conn.append_many(std::slice::from_ref(event)).await
}

/// The oldest events the relay may publish now, at most `limit`, in id order (see the
/// module doc for why PostgreSQL stops at the transaction-id horizon).
pub async fn pending(store: &Store, limit: i64) -> Result<Vec<OutboxRow>> {
    let rows = match store.pools() {
        crate::Pools::Sqlite { write, .. } => {
            store.count_round_trip();
            // The writer's connection: a reader could lag behind a commit it already saw.
            sqlx::query_as(
                "SELECT id, kind, aggregate, payload, created_at, traceparent \
                 FROM outbox ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(write)
            .await?
        }
        crate::Pools::Postgres { write, .. } => {
            store.count_round_trip();
            let rows: Vec<Pending> = sqlx::query_as(
                "SELECT id, kind, aggregate, payload, created_at, traceparent, \
                 xid < pg_snapshot_xmin(pg_current_snapshot()) AS settled \
                 FROM outbox ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(write)
            .await?;
            rows.into_iter()
                .take_while(|r| r.settled)
                .map(|r| r.row)
                .collect()
        }
    };
    Ok(rows)
}

/// Removes published events; returns how many were still there.
pub async fn delete(store: &Store, ids: &[i64]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM outbox WHERE id IN ({})",
        (1..=ids.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let done = on_pool!(store, write, pool => {
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        query.execute(pool).await.map(|r| r.rows_affected())
    })?;
    Ok(done)
}

/// Takes or renews the relay lease `name` for `holder` until `until`; true when `holder`
/// holds it now. It is free when nobody holds it or the holder let it expire (`now`).
pub async fn take_lease(
    store: &Store,
    name: &str,
    holder: &str,
    now: i64,
    until: i64,
) -> Result<bool> {
    let held: Option<String> = on_pool!(store, write, pool => {
        sqlx::query_scalar(
            "INSERT INTO outbox_relay (name, holder, held_until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, held_until = excluded.held_until \
             WHERE outbox_relay.holder = excluded.holder OR outbox_relay.held_until <= $4 \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .fetch_optional(pool)
        .await
    })?;
    Ok(held.as_deref() == Some(holder))
}

/// Gives the lease back (a relay shutting down), so another instance need not wait.
pub async fn release_lease(store: &Store, name: &str, holder: &str) -> Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM outbox_relay WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Events waiting, and the creation time of the next to go (Unix ms), for the depth and lag
/// metrics. On SQLite it reads through a reader connection: counting a long backlog on the
/// single writer would hold up every write for as long.
pub async fn backlog(store: &Store) -> Result<(i64, Option<i64>)> {
    const SQL: &str = "SELECT CAST(COUNT(*) AS BIGINT),
                              (SELECT created_at FROM outbox ORDER BY id LIMIT 1)
                       FROM outbox";
    store.count_round_trip();
    let row: (i64, Option<i64>) = match store.pools() {
        crate::Pools::Sqlite { read, .. } => sqlx::query_as(SQL).fetch_one(read).await?,
        crate::Pools::Postgres { write, .. } => sqlx::query_as(SQL).fetch_one(write).await?,
    };
    Ok(row)
}

/// Records that `consumer` applied event `event_id` on its own; false when it already had.
/// A consumer whose effect is a write should use [`OutboxConn::mark_processed`] in the
/// effect's transaction instead.
pub async fn first_delivery(
    store: &Store,
    consumer: &str,
    event_id: i64,
    now: i64,
) -> Result<bool> {
    let first = match store.pools() {
        crate::Pools::Sqlite { write, .. } => {
            let mut conn = write.acquire().await?;
            conn.mark_processed(consumer, event_id, now).await?
        }
        crate::Pools::Postgres { write, .. } => {
            let mut conn = write.acquire().await?;
            conn.mark_processed(consumer, event_id, now).await?
        }
    };
    Ok(first)
}

/// Whether `consumer` recorded event `event_id` as applied. For a consumer whose effect
/// cannot share a transaction with the record (a mail): it checks first, acts, and records
/// after, so a crash in between repeats the effect rather than losing it.
pub async fn was_processed(store: &Store, consumer: &str, event_id: i64) -> Result<bool> {
    let found: Option<i64> = on_pool!(store, write, pool => {
        sqlx::query_scalar(
            "SELECT event_id FROM processed_events WHERE consumer = $1 AND event_id = $2",
        )
        .bind(consumer)
        .bind(event_id)
        .fetch_optional(pool)
        .await
    })?;
    Ok(found.is_some())
}

/// Forgets processed-event records older than `before` (Unix ms); redeliveries come within
/// minutes, so a retention of days is ample. Returns how many went.
pub async fn prune_processed(store: &Store, before: i64) -> Result<u64> {
    let done = on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM processed_events WHERE processed_at < $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(done)
}

/// Creates the outbox's tables if they are missing: for a crate that writes events (the
/// ledger, the shop) installed on a database where the store's own migrations have not run.
/// The statements are migration 0030's, idempotent, so the migration applies cleanly after;
/// then 0066's column, only where it is missing: `ALTER TABLE` locks the table even when it
/// changes nothing, and a prepared transaction (the ledger's two-phase commit) holding a row
/// of it would block the start-up that is meant to resolve it. SQLite has no `ADD COLUMN IF
/// NOT EXISTS`, so there the store migrates first.
pub async fn install(store: &Store) -> Result<()> {
    match store.pools() {
        crate::Pools::Sqlite { write, .. } => {
            sqlx::raw_sql(include_str!("../migrations/sqlite/0030_outbox.sql"))
                .execute(write)
                .await?;
            let has_trace: bool = sqlx::query_scalar(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('outbox') WHERE name = 'traceparent'",
            )
            .fetch_one(write)
            .await?;
            if !has_trace {
                sqlx::raw_sql(include_str!(
                    "../migrations/sqlite/0066_outbox_traceparent.sql"
                ))
                .execute(write)
                .await?;
            }
        }
        crate::Pools::Postgres { write, .. } => {
            sqlx::raw_sql(include_str!("../migrations/postgres/0030_outbox.sql"))
                .execute(write)
                .await?;
            let has_trace: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'outbox' \
                 AND column_name = 'traceparent')",
            )
            .fetch_one(write)
            .await?;
            if !has_trace {
                sqlx::raw_sql(include_str!(
                    "../migrations/postgres/0066_outbox_traceparent.sql"
                ))
                .execute(write)
                .await?;
            }
        }
    }
    Ok(())
}
