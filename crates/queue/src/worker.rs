//! The worker runtime: claims jobs of all its queues at once ([`Backend::claim_from`]: one
//! writer turn on SQLite, not one per queue), runs each kind's [`Handler`] with a lease
//! renewed by heartbeat, acknowledges with the attempt's fencing token, retries with
//! exponential backoff and jitter, buries what cannot succeed, and shuts down gracefully.
//!
//! (Over 400 lines: the worker loop, its claim batching and graceful stop are one state
//! machine; the acker is already apart in `acker.rs`.)
//!
//! It never busy-loops: with nothing to do it waits in [`Backend::wait_for_work`] (a NOTIFY
//! on PostgreSQL, an in-process wake-up or the poll interval elsewhere).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::acker::Acker;
use crate::{Backend, ClaimedJob, Clock, Error, Handler, JobError, metrics, reply, trace};

/// The handlers a worker runs, by job kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `handler` for jobs of `kind`.
    pub fn handle(mut self, kind: impl Into<String>, handler: Arc<dyn Handler>) -> Self {
        self.handlers.insert(kind.into(), handler);
        self
    }

    /// The handler of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(kind)
    }
}

/// Exponential backoff with jitter, capped: attempt `n` waits a random time between half and
/// all of `min(max, base · 2^(n-1))`. The half that is fixed keeps retries from bunching up
/// at zero; the random half spreads a burst of failures apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's ceiling.
    pub base: Duration,
    /// No retry waits longer.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The ceiling for the retry after attempt `attempt` (from 1), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait before the retry after attempt `attempt`, jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let half = ceiling / 2;
        Duration::from_millis(half + rand::rng().random_range(0..=ceiling - half))
    }
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The queues it claims from, all in one claim ([`Backend::claim_from`]), the limit
    /// shared among them; the list is rotated from one claim to the next.
    pub queues: Vec<String>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim holds a job without a heartbeat.
    pub lease: Duration,
    /// How often a running job's lease is renewed (well under `lease`).
    pub heartbeat: Duration,
    /// The longest wait for work before claiming again (no notification on the engine).
    pub poll: Duration,
    /// On shutdown, how long in-flight jobs may still finish before they are released.
    pub shutdown_grace: Duration,
    /// Retry delays.
    pub backoff: Backoff,
}

impl WorkerConfig {
    /// Defaults for `queues`: 8 at once, 30 s leases renewed every 10 s, 1 s poll, 10 s grace.
    pub fn new<S: Into<String>>(queues: impl IntoIterator<Item = S>) -> Self {
        Self {
            queues: queues.into_iter().map(Into::into).collect(),
            concurrency: 8,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            backoff: Backoff::default(),
        }
    }
}

/// What one run of a worker did (also in the metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs given back unfinished at shutdown.
    pub released: u64,
}

struct Ctx {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    registry: Registry,
}

/// A worker: see the module docs.
pub struct Worker {
    ctx: Arc<Ctx>,
}

impl Worker {
    /// A worker for `backend` running `registry`'s handlers.
    pub fn new(
        backend: Arc<dyn Backend>,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
        registry: Registry,
    ) -> Self {
        Self {
            ctx: Arc::new(Ctx {
                backend,
                clock,
                config,
                registry,
            }),
        }
    }

    /// Runs until `shutdown` completes; then stops claiming, lets in-flight jobs finish for
    /// up to the grace period and releases the rest.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> WorkerReport {
        metrics::describe();
        let ctx = self.ctx;
        let cfg = &ctx.config;
        let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        let acker = Acker::spawn(ctx.backend.clone());
        let (hard_stop, stopping) = watch::channel(false);
        let mut tasks: JoinSet<bool> = JoinSet::new();
        let mut report = WorkerReport::default();
        // Rotated after every claim (see `claim_from`).
        let mut queues = cfg.queues.clone();
        // The gauges are read on their own task: a count over a long backlog must not hold
        // up the claims (it cost the jobs that arrived meanwhile their start latency).
        let stats = tokio::spawn(record_stats_every(ctx.backend.clone(), STATS_EVERY));
        let shutdown = shutdown.fuse();
        futures_util::pin_mut!(shutdown);
        'run: loop {
            if (&mut shutdown).now_or_never().is_some() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            // A busy worker claims in batches: with fewer than a quarter of its slots free it
            // waits (briefly, if any slot is free) for more, so one claim statement serves
            // several jobs; an idle worker claims at once.
            let free = sem.available_permits();
            let batch = (cfg.concurrency / 4).max(1);
            if free < batch {
                tokio::select! {
                    () = &mut shutdown => break 'run,
                    _ = sem.acquire_many(batch as u32) => {}
                    () = tokio::time::sleep(CLAIM_LINGER), if free > 0 => {}
                }
            }
            let mut claimed = 0;
            let free = sem.available_permits();
            if free > 0 && !queues.is_empty() {
                // One claim over every queue (one writer turn on SQLite); the rotation makes
                // a limit smaller than the queues with work serve them in turn.
                let jobs = match ctx.backend.claim_from(&queues, cfg.lease, free).await {
                    Ok(jobs) => jobs,
                    Err(e) => {
                        tracing::warn!(error = %e, "claim failed");
                        Vec::new()
                    }
                };
                // A stop that arrived while the claim was on its way: nothing claimed now
                // starts; it goes back unstarted, its attempt given back.
                if (&mut shutdown).now_or_never().is_some() {
                    for job in jobs {
                        match ctx.backend.release(&job.lease).await {
                            Ok(()) => report.released += 1,
                            Err(e) => tracing::warn!(job = %job.lease.id, error = %e,
                                "release at shutdown failed; the lease will expire"),
                        }
                    }
                    break 'run;
                }
                for job in jobs {
                    // Only this loop takes permits, and it asked for no more than were free.
                    let Ok(permit) = sem.clone().try_acquire_owned() else {
                        let _ = ctx.backend.release(&job.lease).await;
                        continue;
                    };
                    claimed += 1;
                    let (ctx, stop, acker) = (ctx.clone(), stopping.clone(), acker.clone());
                    tasks.spawn(async move {
                        let released = run_one(&ctx, &acker, job, stop).await;
                        drop(permit);
                        released
                    });
                }
            }
            if !queues.is_empty() {
                queues.rotate_left(1);
            }
            report.claimed += claimed;
            if claimed == 0 {
                tokio::select! {
                    () = &mut shutdown => break 'run,
                    () = wait_any(&ctx) => {}
                }
            }
        }
        stats.abort();
        // Graceful shutdown: no more claims; in-flight work gets the grace period.
        let grace = tokio::time::sleep(cfg.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = tasks.join_next() => match next {
                    Some(Ok(true)) => report.released += 1,
                    Some(_) => {}
                    None => break,
                },
                () = &mut grace, if !*hard_stop.borrow() => {
                    let _ = hard_stop.send(true);
                }
            }
        }
        report
    }
}

/// How often a worker refreshes the queue gauges.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// Sets the queue gauges now and every `every` after, until aborted.
async fn record_stats_every(backend: Arc<dyn Backend>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = metrics::record_stats(backend.as_ref()).await {
            tracing::warn!(error = %e, "queue stats unavailable");
        }
    }
}

/// Waits until any of the worker's queues may have work, or the poll interval passes.
async fn wait_any(ctx: &Ctx) {
    let poll = ctx.config.poll;
    if ctx.config.queues.is_empty() {
        return tokio::time::sleep(poll).await;
    }
    let waits = ctx
        .config
        .queues
        .iter()
        .map(|q| ctx.backend.wait_for_work(q, poll));
    futures_util::future::select_all(waits).await;
}

/// How long a busy worker with a few free slots waits for more before claiming anyway.
const CLAIM_LINGER: Duration = Duration::from_millis(2);

/// Runs one claimed job to its end; true if it was released at shutdown.
async fn run_one(
    ctx: &Ctx,
    acker: &Acker,
    job: ClaimedJob,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let queue = job.lease.queue.clone();
    let started_late = (ctx.clock.now_ms() - job.run_at_ms).max(0) as f64 / 1000.0;
    ::metrics::histogram!("queue_start_latency_seconds", "queue" => queue.clone())
        .record(started_late);
    let Some(handler) = ctx.registry.get(&job.kind) else {
        let why = format!("no handler for job kind {:?}", job.kind);
        finish_dead(ctx, &job, &why).await;
        return false;
    };
    let started = Instant::now();
    // The run continues the trace of whoever enqueued the job.
    let span = trace::job_span(ctx.backend.name(), &job);
    let work = AssertUnwindSafe(handler.run(&job).instrument(span.clone())).catch_unwind();
    let beat = heartbeat(ctx, &job);
    tokio::pin!(work, beat);
    let outcome = tokio::select! {
        outcome = &mut work => outcome,
        () = &mut beat => {
            // Someone else holds the job now: abandon this attempt without acknowledging.
            tracing::warn!(job = %job.lease.id, "lease lost while running; attempt abandoned");
            return false;
        }
        () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
            if let Err(e) = ctx.backend.release(&job.lease).await {
                tracing::warn!(job = %job.lease.id, error = %e, "release at shutdown failed");
            }
            return true;
        }
    };
    ::metrics::histogram!("queue_processing_seconds", "queue" => queue.clone())
        .record(started.elapsed().as_secs_f64());
    trace::record_outcome(
        &span,
        match &outcome {
            Ok(Ok(_)) => "processed",
            Ok(Err(JobError::Fatal(_))) => "failed",
            Ok(Err(JobError::Retry(_))) => "retry",
            Err(_) => "panicked",
        },
    );
    match outcome {
        Ok(Ok(result)) => {
            if job.reply_to.is_some() {
                reply::send(
                    ctx.backend.as_ref(),
                    &job,
                    Ok(result.clone().unwrap_or_default()),
                )
                .await;
            }
            match acker.complete(job.lease.clone(), result).await {
                Ok(()) => metrics::outcome(&queue, "processed"),
                Err(e) => tracing::warn!(job = %job.lease.id, error = %e, "complete refused"),
            }
        }
        Ok(Err(JobError::Fatal(why))) => {
            metrics::outcome(&queue, "failed");
            finish_dead(ctx, &job, &why).await;
        }
        Ok(Err(JobError::Retry(why))) => fail(ctx, &job, &why).await,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            fail(ctx, &job, &format!("handler panicked: {why}")).await;
        }
    }
    false
}

/// Renews the lease until it is lost (returns then) or the job ends (dropped).
async fn heartbeat(ctx: &Ctx, job: &ClaimedJob) {
    loop {
        tokio::time::sleep(ctx.config.heartbeat).await;
        match ctx.backend.heartbeat(&job.lease, ctx.config.lease).await {
            Ok(()) => {}
            Err(Error::LeaseLost(_)) => return,
            Err(e) => tracing::warn!(job = %job.lease.id, error = %e, "heartbeat failed"),
        }
    }
}

/// A failed attempt: retry after backoff, or bury when it was the last.
async fn fail(ctx: &Ctx, job: &ClaimedJob, why: &str) {
    metrics::outcome(&job.lease.queue, "failed");
    if job.attempt >= job.max_attempts {
        finish_dead(ctx, job, why).await;
        return;
    }
    let at = ctx.clock.now_ms() + ctx.config.backoff.delay(job.attempt).as_millis() as i64;
    match ctx.backend.retry(&job.lease, why, at).await {
        Ok(()) => metrics::outcome(&job.lease.queue, "retried"),
        Err(e) => tracing::warn!(job = %job.lease.id, error = %e, "retry refused"),
    }
}

async fn finish_dead(ctx: &Ctx, job: &ClaimedJob, why: &str) {
    match ctx.backend.bury(&job.lease, why).await {
        Ok(()) => {
            metrics::outcome(&job.lease.queue, "dead");
            if job.reply_to.is_some() {
                reply::send(ctx.backend.as_ref(), job, Err(why.to_owned())).await;
            }
        }
        Err(e) => tracing::warn!(job = %job.lease.id, error = %e, "bury refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let ceilings: Vec<u64> = (1..=8).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            b.ceiling(u32::MAX),
            Duration::from_secs(60),
            "no overflow far out"
        );
    }

    #[test]
    fn backoff_jitter_stays_between_half_and_all_of_the_ceiling_and_varies() {
        let b = Backoff {
            base: Duration::from_millis(1000),
            max: Duration::from_secs(3600),
        };
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(3)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(2000) && *d <= Duration::from_millis(4000))
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 20, "jitter spreads retries apart");
    }
}
