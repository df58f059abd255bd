//! The read models follow the event feed through the queue: a `ledger.project` job applies
//! every event not yet projected (`Projector::catch_up`, each batch in one transaction with
//! its projection's checkpoint, so a crash loses nothing and applies nothing twice).
//!
//! Who enqueues it: the ledger's runner in every `serve` process, when a write of that
//! process rang its bell (at most once per [`COALESCE`]), and on a periodic safety tick,
//! which also covers writes whose process died before it could enqueue: after a SIGKILL
//! between an event's commit and its projection, the next tick of any process (or of the
//! restarted one) catches the read models up. Any worker runs the job: inside `serve`, or
//! a separate `basis worker`.
//!
//! Coalescing: the job's deduplication key names a [`BUCKET_MS`] slice of time, and the
//! queue keeps one unfinished job per key, so a burst of thousands of transfers makes at
//! most ten jobs a second. Why not one key for ever: a job claimed by a process that then
//! died holds its key until its lease runs out (30 s), and writes made while a job runs
//! would wait for the next tick; with a key per slice, the next slice has a job at once.
//! Two jobs may run at the same time: each batch locks its projection's checkpoint.

use std::sync::Arc;
use std::time::Duration;

use basis_ledger::{Ledger, Projector};
use basis_queue::{ClaimedJob, JobError, NewJob};

use crate::jobs::context::JobContext;
use crate::jobs::{Jobs, LEDGER_QUEUE};

/// The job kind.
pub const PROJECT: &str = "ledger.project";
/// The slice of time one deduplication key covers (ms).
pub const BUCKET_MS: i64 = 100;
/// Events applied per projection transaction.
const BATCH: i64 = 500;
/// The shortest gap between two enqueues by one runner (a burst of writes rings the bell
/// continuously; its events are caught up by the job already queued).
pub const COALESCE: Duration = Duration::from_millis(20);

/// Enqueues a projection job unless one of the current slice of time is already waiting or
/// running. Returns whether a new job was made.
pub async fn enqueue(jobs: &Jobs, now_ms: i64) -> Result<bool, basis_queue::Error> {
    let job = NewJob {
        dedup_key: Some(format!("{PROJECT}:{}", now_ms.div_euclid(BUCKET_MS))),
        max_attempts: 20,
        ..NewJob::new(LEDGER_QUEUE, PROJECT, serde_json::json!({}))
    };
    let enqueued = jobs.enqueue(job).await?;
    let made = !enqueued.duplicate;
    let outcome = if made { "enqueued" } else { "coalesced" };
    metrics::counter!("ledger_projection_jobs_total", "outcome" => outcome).increment(1);
    Ok(made)
}

/// Applies every event not yet projected, then reports how many.
pub async fn project(
    ctx: Arc<JobContext>,
    _job: ClaimedJob,
) -> Result<Option<serde_json::Value>, JobError> {
    let projector = Projector::new(Ledger::new(ctx.store.clone(), ctx.clock.clone()));
    let projected = projector
        .catch_up_all(BATCH)
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
    Ok(Some(serde_json::json!({ "projected": projected })))
}
