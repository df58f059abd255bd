//! The queue's metrics, on the `metrics` facade (the server exports them for Prometheus).
//!
//! - `queue_depth{queue}` and `queue_oldest_ready_age_seconds{queue}`, `queue_running{queue}`,
//!   `queue_dead{queue}`: gauges set by [`record_stats`] (the worker calls it periodically);
//! - `queue_jobs_total{queue, outcome}` with outcome `processed | failed | retried | dead`;
//! - `queue_processing_seconds{queue}`: handler run time; `queue_start_latency_seconds{queue}`:
//!   from a job's due time to the start of its attempt;
//! - `queue_lease_expiries_total{queue}`: jobs claimed again because a lease ran out.

use std::collections::BTreeMap;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

use crate::{Backend, QueueStats, Result};

/// Registers the descriptions once (harmless to call again).
pub fn describe() {
    describe_gauge!(
        "queue_depth",
        "Jobs waiting (ready or scheduled) per queue."
    );
    describe_gauge!("queue_running", "Jobs claimed and not finished per queue.");
    describe_gauge!("queue_dead", "Dead letters per queue.");
    describe_gauge!(
        "queue_oldest_ready_age_seconds",
        Unit::Seconds,
        "How long the oldest ready job has waited."
    );
    describe_counter!("queue_jobs_total", "Attempts finished, by outcome.");
    describe_histogram!(
        "queue_processing_seconds",
        Unit::Seconds,
        "Handler run time."
    );
    describe_histogram!(
        "queue_start_latency_seconds",
        Unit::Seconds,
        "From a job's due time to the start of its attempt."
    );
    describe_counter!(
        "queue_lease_expiries_total",
        "Jobs claimed again after a lease ran out."
    );
}

/// Reads the backend's figures and sets the gauges; returns them.
pub async fn record_stats(backend: &dyn Backend) -> Result<Vec<QueueStats>> {
    let stats = backend.stats().await?;
    for s in &stats {
        let q = s.queue.clone();
        gauge!("queue_depth", "queue" => q.clone()).set(s.depth as f64);
        gauge!("queue_running", "queue" => q.clone()).set(s.running as f64);
        gauge!("queue_dead", "queue" => q.clone()).set(s.dead as f64);
        gauge!("queue_oldest_ready_age_seconds", "queue" => q)
            .set(s.oldest_ready_age_ms as f64 / 1000.0);
    }
    Ok(stats)
}

/// Counts one finished attempt.
pub(crate) fn outcome(queue: &str, outcome: &'static str) {
    counter!("queue_jobs_total", "queue" => queue.to_owned(), "outcome" => outcome).increment(1);
}

/// Builds per-queue figures from the SQL engines' two grouped queries: `(queue, waiting,
/// running, oldest ready run_at)` and `(queue, dead)`.
pub(crate) fn merge_stats(
    now_ms: i64,
    live: Vec<(String, i64, i64, Option<i64>)>,
    dead: Vec<(String, i64)>,
) -> Vec<QueueStats> {
    let mut by_queue: BTreeMap<String, QueueStats> = BTreeMap::new();
    let blank = |queue: &str| QueueStats {
        queue: queue.to_owned(),
        depth: 0,
        running: 0,
        oldest_ready_age_ms: 0,
        dead: 0,
    };
    for (queue, waiting, running, oldest) in live {
        let s = by_queue
            .entry(queue.clone())
            .or_insert_with(|| blank(&queue));
        s.depth = waiting.max(0) as u64;
        s.running = running.max(0) as u64;
        s.oldest_ready_age_ms = oldest.map_or(0, |t| (now_ms - t).max(0) as u64);
    }
    for (queue, n) in dead {
        by_queue
            .entry(queue.clone())
            .or_insert_with(|| blank(&queue))
            .dead = n.max(0) as u64;
    }
    by_queue.into_values().collect()
}
