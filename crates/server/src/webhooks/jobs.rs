//! The queue handlers of webhooks: the `events` consumer that turns an event into
//! deliveries, and one delivery attempt.

use std::sync::Arc;

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

/// Enqueues attempt number `attempts + 1` of delivery `id`, due at `run_at`. The dedup key
/// names the attempt, so a fan-out run twice enqueues it once.
async fn schedule(hooks: &Webhooks, id: i64, attempts: i32, run_at: i64) -> Result<(), JobError> {
    let mut job = NewJob::new(
        QUEUE,
        DELIVER,
        serde_json::to_value(DeliverJob { delivery_id: id }).map_err(retry)?,
    );
    job.run_at_ms = Some(run_at);
    job.dedup_key = Some(format!("webhook-delivery:{id}:{attempts}"));
    hooks.backend.enqueue(job).await.map_err(retry)?;
    Ok(())
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
