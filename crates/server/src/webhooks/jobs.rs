//! The queue handlers of webhooks: the `events` consumer that turns an event into
//! deliveries, and one delivery attempt; and the sweep that re-enqueues the attempts a
//! crash lost.
//!
//! A delivery's next attempt is a queue job enqueued after the database says the attempt
//! is due (after the fan-out's transaction, after an attempt is recorded). A process that
//! dies between the two leaves a pending delivery with no job, which a redelivered job then
//! takes for stale. [`sweep`] finds pending deliveries overdue by [`SWEEP_AFTER`] and
//! enqueues their attempt under the attempt's deduplication key: a job the queue still
//! holds (waiting, or leased by a live or dead worker, which the lease hands back) keeps
//! the key, so only lost attempts get a new job, and the attempt count fences any double.

use std::sync::Arc;
use std::time::Duration;

use basis_queue::{ClaimedJob, JobError, NewJob};
use basis_store::webhooks as store;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{EVENTS, Webhooks, deliver};
use crate::clock::to_datetime;
use crate::jobs::context::JobContext;

/// The subscriber group of the `events` topic that webhooks consume, and the name under
/// which they record processed events.
pub const GROUP: &str = "webhooks";
/// The queue of delivery attempts (apart from the events, so slow receivers never hold up
/// the fan-out).
pub const QUEUE: &str = "webhooks";
/// One delivery attempt.
pub const DELIVER: &str = "webhook.deliver";

/// What a delivery job carries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliverJob {
    delivery_id: i64,
}

fn webhooks(ctx: &JobContext) -> Result<&Arc<Webhooks>, JobError> {
    ctx.webhooks
        .as_ref()
        .ok_or_else(|| JobError::Retry("webhooks are not set up in this process".into()))
}

fn retry(e: impl std::fmt::Display) -> JobError {
    JobError::Retry(e.to_string())
}

/// How long past its due time a pending delivery's attempt must be before [`sweep`] takes
/// its job for lost: far beyond a job's lease and an attempt's timeout, so a queue that is
/// merely busy is left alone (and the deduplication key would stop a double anyway).
pub const SWEEP_AFTER: Duration = Duration::from_secs(600);
/// How often the processes that run the outbox relay (`serve` with workers, `basis worker`)
/// sweep.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Deliveries looked at per sweep.
const SWEEP_BATCH: i64 = 1_000;

/// The job of attempt number `attempts + 1` of delivery `id`, due at `run_at`. The dedup
/// key names the attempt, so a fan-out run twice, or a sweep, enqueues it once.
pub fn attempt_job(id: i64, attempts: i32, run_at: i64) -> NewJob {
    let payload =
        serde_json::to_value(DeliverJob { delivery_id: id }).expect("a delivery job is plain JSON");
    let mut job = NewJob::new(QUEUE, DELIVER, payload);
    job.run_at_ms = Some(run_at);
    job.dedup_key = Some(format!("webhook-delivery:{id}:{attempts}"));
    job
}

/// Enqueues [`attempt_job`]; true when a job was added (not held already).
async fn schedule(hooks: &Webhooks, id: i64, attempts: i32, run_at: i64) -> Result<bool, JobError> {
    let enqueued = hooks
        .backend
        .enqueue(attempt_job(id, attempts, run_at))
        .await
        .map_err(retry)?;
    Ok(!enqueued.duplicate)
}

/// Enqueues, due now, the attempt of every pending delivery overdue by [`SWEEP_AFTER`] at
/// `now` whose job the queue no longer holds; returns how many jobs were added.
pub async fn sweep(db: &basis_store::Store, hooks: &Webhooks, now: i64) -> Result<usize, JobError> {
    let overdue_at = now - SWEEP_AFTER.as_millis() as i64;
    let overdue = store::due(db, overdue_at, SWEEP_BATCH)
        .await
        .map_err(retry)?;
    let mut added = 0;
    for (id, _, attempts) in overdue {
        if schedule(hooks, id, attempts, now).await? {
            added += 1;
        }
    }
    Ok(added)
}

/// [`sweep`] every minute, overdue judged by `clock`, until `stop` turns true.
pub async fn sweep_periodically(
    db: basis_store::Store,
    hooks: Arc<Webhooks>,
    clock: Arc<dyn crate::clock::Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // The first sweep a minute after start: what it looks for is ten minutes overdue.
    let first = tokio::time::Instant::now() + SWEEP_EVERY;
    let mut ticks = tokio::time::interval_at(first, SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => match sweep(&db, &hooks, clock.now_ms()).await {
                Ok(0) => {}
                Ok(added) => tracing::warn!(added, "lost webhook attempts enqueued again"),
                Err(err) => tracing::warn!(error = %err, "the webhook sweep failed; will retry"),
            },
            _ = stop.changed() => return,
        }
    }
}

/// The `events` consumer: a link event becomes one delivery per endpoint of the link's owner
/// that asked for its kind. Other kinds (transfers, orders) are not for webhooks.
pub async fn fan_out(ctx: Arc<JobContext>, job: ClaimedJob) -> Result<Option<Value>, JobError> {
    let event = crate::outbox::envelope(&job.payload)
        .ok_or_else(|| JobError::bad_payload("not an outbox event"))?;
    if !EVENTS.contains(&event.kind.as_str()) {
        return Ok(None);
    }
    let Some(owner) = event.data.get("ownerId").and_then(Value::as_str) else {
        return Ok(None); // an anonymous link: nobody to tell
    };
    let hooks = webhooks(&ctx)?;
    let mut data = event.data.clone();
    if let Some(data) = data.as_object_mut() {
        data.remove("ownerId");
    }
    let body = json!({
        "id": format!("evt_{}", event.id),
        "type": event.kind,
        "createdAt": to_datetime(event.at),
        "data": data,
    })
    .to_string();
    let now = ctx.clock.now_ms();
    let pending = store::fan_out(&ctx.store, GROUP, event.id, &event.kind, owner, &body, now)
        .await
        .map_err(retry)?;
    tracing::debug!(
        event = event.id,
        aggregate = %event.aggregate,
        deliveries = pending.len(),
        "event fanned out to webhooks"
    );
    for (id, next_at, attempts) in &pending {
        schedule(hooks, *id, *attempts, *next_at).await?;
    }
    Ok(Some(json!({ "deliveries": pending.len() })))
}

/// One attempt of a delivery; a failure schedules the next one (or dead-letters the
/// delivery a day after its event). The job itself only fails when the database does.
pub async fn attempt(ctx: Arc<JobContext>, job: ClaimedJob) -> Result<Option<Value>, JobError> {
    let DeliverJob { delivery_id } =
        serde_json::from_value(job.payload).map_err(JobError::bad_payload)?;
    let hooks = webhooks(&ctx)?;
    let Some((delivery, hook)) = store::delivery(&ctx.store, delivery_id)
        .await
        .map_err(retry)?
    else {
        return Ok(None); // the endpoint was deleted
    };
    let now = ctx.clock.now_ms();
    if delivery.status != "pending" || delivery.next_attempt_at > now {
        return Ok(None); // done already, or a stale job: the due one is queued
    }
    let outcome = deliver::attempt(
        &hooks.settings,
        &hook.url,
        &hook.secret,
        &delivery.kind,
        delivery.id,
        &delivery.body,
        now,
    )
    .await;
    let attempts = delivery.attempts + 1;
    let now = ctx.clock.now_ms();
    let step = deliver::next_step(outcome, attempts, delivery.created_at, now);
    if !store::record_attempt(&ctx.store, delivery.id, delivery.attempts, &step, now)
        .await
        .map_err(retry)?
    {
        return Ok(None); // another worker recorded this attempt first
    }
    let status = match &step {
        store::Attempt::Delivered { .. } => "delivered",
        store::Attempt::Retry { next_at, .. } => {
            schedule(hooks, delivery.id, attempts, *next_at).await?;
            "pending"
        }
        store::Attempt::Dead { .. } => {
            tracing::warn!(
                delivery = delivery.id,
                webhook = hook.id,
                "webhook delivery dead-lettered"
            );
            "dead"
        }
    };
    metrics::counter!("webhook_attempts_total", "outcome" => status).increment(1);
    Ok(Some(json!({ "status": status, "attempts": attempts })))
}
