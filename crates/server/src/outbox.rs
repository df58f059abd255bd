//! The outbox relay: moves the events writers committed in `basis_store::outbox` to the
//! queue's `events` topic, at least once and in order per aggregate.
//!
//! # How one pass works
//!
//! 1. Take or renew the relay lease (one row in `outbox_relay`, [`LEASE_MS`] long, read
//!    against the injected clock). Only the holder publishes; every instance of `basis serve`
//!    and `basis worker` runs a relay, and the others stay idle until the holder stops
//!    renewing (a crash) or gives the lease back (a shutdown). One publisher at a time keeps
//!    each aggregate's events in id order on the queue without partitioning.
//! 2. Read the oldest events the engine allows ([`basis_store::outbox::pending`]: in id
//!    order, and on PostgreSQL only below the transaction-id horizon, so a long transaction's
//!    row is never overtaken or skipped).
//! 3. Publish them to the topic [`EVENTS_TOPIC`] as one batch (one statement on the SQL
//!    queues, whose every write waits its turn at the database); the first failure ends the
//!    pass, so nothing after a failed event is published before it.
//! 4. Delete what was published.
//!
//! A crash between 3 and 4, or a holder that stalls past its lease while another takes over,
//! publishes an event twice, never reorders one aggregate's events (each publisher goes in id
//! order) and never loses one (rows leave the table only after the queue has them). The
//! envelope carries the event id, and consumers deduplicate by it
//! ([`basis_store::outbox::first_delivery`] or `mark_processed` in their own transaction).
//!
//! # Metrics
//!
//! `outbox_depth` (events waiting), `outbox_lag_ms` (age of the oldest waiting event, 0 when
//! none) and `outbox_published_total`, refreshed by every pass of the lease holder.

use std::sync::Arc;
use std::time::Duration;

use basis_queue::{Backend, Message};
use basis_store::Store;
use basis_store::outbox::{self, OutboxRow};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::Clock;

/// The queue topic events are published to; each consumer subscribes a group to it.
pub const EVENTS_TOPIC: &str = "events";
/// The name of the relay lease.
pub const RELAY: &str = "relay";
/// How long a lease lasts without renewal (a pass renews it).
pub const LEASE_MS: i64 = 15_000;
/// Events read, and published, per batch.
const BATCH: i64 = 500;
/// How often an idle relay looks for new events.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// What a consumer receives: the event and its id for deduplication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The event id (the outbox row's id): unique, increasing per aggregate.
    pub id: i64,
    /// What happened (`link.created`…).
    pub kind: String,
    /// The aggregate (`link:42`).
    pub aggregate: String,
    /// When it happened (Unix ms).
    pub at: i64,
    /// The writer's data.
    pub data: serde_json::Value,
}

impl Envelope {
    fn of(row: &OutboxRow) -> Self {
        Self {
            id: row.id,
            kind: row.kind.clone(),
            aggregate: row.aggregate.clone(),
            at: row.created_at,
            data: serde_json::from_str(&row.payload)
                .unwrap_or_else(|_| serde_json::Value::String(row.payload.clone())),
        }
    }
}

/// The span an event is published in: a child of the writer's span (the request or job that
/// committed it), so the publish, and each consumer's job after it, stay in the writer's trace.
fn relay_span(row: &OutboxRow) -> tracing::Span {
    let span = tracing::debug_span!(
        "outbox relay",
        otel.name = %format_args!("{} relay", row.kind),
        event.id = row.id,
        event.aggregate = %row.aggregate,
    );
    if let Some(parent) = row.traceparent.as_deref() {
        basis_queue::trace::continue_trace(&span, parent);
    }
    span
}

/// One relay instance.
#[derive(Debug, Clone)]
pub struct Relay {
    store: Store,
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    /// This instance's name in the lease row.
    holder: String,
}

impl Relay {
    /// A relay publishing `store`'s outbox to `backend`, named randomly.
    pub fn new(store: Store, backend: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            backend,
            clock,
            holder: format!("relay-{:016x}", rand::random::<u64>()),
        }
    }

    /// This instance's lease name.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes or renews the lease; true while this instance may publish.
    pub async fn lead(&self) -> basis_store::Result<bool> {
        let now = self.clock.now_ms();
        outbox::take_lease(&self.store, RELAY, &self.holder, now, now + LEASE_MS).await
    }

    /// Publishes `rows` in order, as one batch where the queue allows, stopping at the
    /// first failure; returns the ids published. Step 3 of a pass, apart so tests can stop a
    /// relay between it and the delete (a crash).
    pub async fn publish(&self, rows: &[OutboxRow]) -> Vec<i64> {
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            match serde_json::to_value(Envelope::of(row)) {
                Ok(payload) => messages.push(Message {
                    kind: row.kind.clone(),
                    payload,
                    // Each event's jobs continue the trace of the writer that committed it.
                    traceparent: basis_queue::trace::traceparent(&relay_span(row)),
                }),
                Err(err) => {
                    tracing::error!(id = row.id, error = %err, "an outbox event does not serialise");
                    break;
                }
            }
        }
        let sent = match self.backend.publish_many(EVENTS_TOPIC, &messages).await {
            Ok(sent) => sent.min(messages.len()),
            Err(err) => {
                let id = rows.first().map(|r| r.id);
                tracing::warn!(id, error = %err, "outbox publish failed; will retry");
                0
            }
        };
        for row in &rows[..sent] {
            tracing::debug!(
                id = row.id,
                kind = %row.kind,
                aggregate = %row.aggregate,
                "event published"
            );
        }
        rows[..sent].iter().map(|row| row.id).collect()
    }

    /// One pass (see the module doc); returns how many events it published. Loops while full
    /// batches come back, so a backlog drains in one call.
    pub async fn run_once(&self) -> basis_store::Result<usize> {
        if !self.lead().await? {
            return Ok(0);
        }
        let mut published = 0;
        loop {
            let rows = outbox::pending(&self.store, BATCH).await?;
            let done = self.publish(&rows).await;
            outbox::delete(&self.store, &done).await?;
            published += done.len();
            metrics::counter!("outbox_published_total").increment(done.len() as u64);
            if done.len() < rows.len() || rows.len() < BATCH as usize {
                break;
            }
            // A long drain renews the lease as it goes.
            if !self.lead().await? {
                break;
            }
        }
        self.refresh_gauges().await?;
        Ok(published)
    }

    /// Sets `outbox_depth` and `outbox_lag_ms` from the table.
    pub async fn refresh_gauges(&self) -> basis_store::Result<()> {
        let (depth, oldest) = outbox::backlog(&self.store).await?;
        let lag = oldest.map_or(0, |at| (self.clock.now_ms() - at).max(0));
        metrics::gauge!("outbox_depth").set(depth as f64);
        metrics::gauge!("outbox_lag_ms").set(lag as f64);
        Ok(())
    }

    /// Runs passes every `interval` until `stop` turns true, then gives the lease back.
    pub async fn run(self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(err) = self.run_once().await {
                        tracing::warn!(error = %err, "outbox relay pass failed; will retry");
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        if let Err(err) = outbox::release_lease(&self.store, RELAY, &self.holder).await {
            tracing::warn!(error = %err, "cannot give the outbox lease back; it will expire");
        }
    }
}

/// Runs a relay on `store`'s outbox and, when links are sharded, one on each shard
/// database's (each has its own outbox and lease), every [`INTERVAL`] until `stop`.
pub fn spawn_relays(
    store: &Store,
    backend: &Arc<dyn Backend>,
    clock: &Arc<dyn Clock>,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut outboxes = vec![store.clone()];
    if let Some(shards) = store.link_shards() {
        outboxes.extend(shards.layout().databases.iter().map(|d| d.store.clone()));
    }
    outboxes
        .into_iter()
        .map(|outbox| {
            let relay = Relay::new(outbox, backend.clone(), clock.clone());
            tokio::spawn(relay.run(INTERVAL, stop.clone()))
        })
        .collect()
}

/// Reads an event a consumer was handed; `None` for a payload that is not one.
pub fn envelope(payload: &serde_json::Value) -> Option<Envelope> {
    serde_json::from_value(payload.clone()).ok()
}
