//! The worker runtime: claims jobs of all its queues at once ([`Backend::claim_from`]: one
//! writer turn on SQLite, not one per queue), runs each kind's [`Handler`] with a lease
//! renewed by heartbeat, acknowledges with the attempt's fencing token, retries with
//! exponential backoff and jitter, buries what cannot succeed, and shuts down gracefully.
//!
//! A claim costs a round trip (on SQLite, a turn at the single writer, which a write-heavy
//! load makes long), so a worker whose jobs are short claims ahead of its free slots
//! ([`WorkerConfig::prefetch`]): the extra jobs wait in the worker, oldest first, and start
//! as slots free up. How far ahead is bounded by the recent run time of its jobs, so that a
//! job claimed ahead starts within a quarter of its lease; one that has waited half its
//! lease anyway is released unstarted rather than run on a lease about to lapse, so no job
//! runs twice. A finished job frees its slot at once; its acknowledgement (batched, see
//! `acker.rs`) no longer holds up the next job, only the count of jobs the worker holds.
//!
//! (Over 400 lines: the worker loop, its claim batching and graceful stop are one state
//! machine; the acker is already apart in `acker.rs`.)
//!
//! It never busy-loops: with nothing to do it waits in [`Backend::wait_for_work`] (a NOTIFY
//! on PostgreSQL, an in-process wake-up or the poll interval elsewhere).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
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
    /// Most jobs claimed beyond the free slots, held in the worker until a slot frees
    /// (0: a claim takes only what can start at once). Fewer while jobs take long: no
    /// more than the slots get through in a quarter of the lease at the recent pace.
    pub prefetch: usize,
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
    /// Defaults for `queues`: 8 at once, no claiming ahead, 30 s leases renewed every
    /// 10 s, 1 s poll, 10 s grace.
    pub fn new<S: Into<String>>(queues: impl IntoIterator<Item = S>) -> Self {
        Self {
            queues: queues.into_iter().map(Into::into).collect(),
            concurrency: 8,
            prefetch: 0,
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
    pace: Pace,
}

/// The recent run time of the worker's jobs (a moving average, in nanoseconds; 0 until a
/// job has finished), which bounds how far ahead the worker claims.
#[derive(Debug, Default)]
struct Pace(AtomicU64);

impl Pace {
    fn record(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| {
                Some(if avg == 0 {
                    took
                } else {
                    (avg - avg / 8).saturating_add(took / 8).max(1)
                })
            });
    }

    /// How many jobs to claim beyond the free slots: as many as all the slots get through
    /// in a quarter of the lease at the recent pace, at most `prefetch`; none while the
    /// pace is unknown.
    fn room(&self, config: &WorkerConfig) -> usize {
        let avg = self.0.load(Ordering::Relaxed);
        if avg == 0 || config.prefetch == 0 {
            return 0;
        }
        let window = u64::try_from((config.lease / 4).as_nanos()).unwrap_or(u64::MAX);
        let room = (window / avg).saturating_mul(config.concurrency.max(1) as u64);
        room.min(config.prefetch as u64) as usize
    }
}

/// A job claimed ahead of a free slot, waiting in the worker.
struct Ahead {
    job: ClaimedJob,
    /// Its place among the jobs the worker holds.
    held: OwnedSemaphorePermit,
    /// When it was claimed, on the worker's clock.
    claimed_ms: i64,
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
                pace: Pace::default(),
            }),
        }
    }

    /// Runs until `shutdown` completes; then stops claiming, lets in-flight jobs finish for
    /// up to the grace period and releases the rest.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> WorkerReport {
        metrics::describe();
        let ctx = self.ctx;
        let cfg = &ctx.config;
        let concurrency = cfg.concurrency.max(1);
        // A slot is taken while a job runs; a place while the worker holds a job at all
        // (waiting ahead, running, or waiting for its acknowledgement).
        let slots = Arc::new(Semaphore::new(concurrency));
        let places = Arc::new(Semaphore::new(concurrency + cfg.prefetch));
        let mut ahead: VecDeque<Ahead> = VecDeque::new();
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
            // Jobs claimed ahead start first, oldest first, as slots allow.
            while !ahead.is_empty() {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break;
                };
                let Some(next) = ahead.pop_front() else { break };
                if ctx.clock.now_ms() - next.claimed_ms > (cfg.lease / 2).as_millis() as i64 {
                    // Too close to the end of its lease to start: given back unstarted.
                    give_back(&ctx, &next.job, "waited half its lease").await;
                    continue;
                }
                let (ctx, stop, acker) = (ctx.clone(), stopping.clone(), acker.clone());
                tasks.spawn(async move {
                    let released = run_one(&ctx, &acker, next.job, slot, stop).await;
                    drop(next.held);
                    released
                });
            }
            if !ahead.is_empty() {
                // Every slot is busy: wait for one.
                tokio::select! {
                    () = &mut shutdown => break 'run,
                    _ = slots.acquire() => {}
                }
                continue;
            }
            if places.available_permits() == 0 {
                // Every place is taken by jobs waiting for their acknowledgement.
                tokio::select! {
                    () = &mut shutdown => break 'run,
                    _ = places.acquire() => {}
                }
                continue;
            }
            // A busy worker claims in batches: with fewer than a quarter of its slots free it
            // waits (briefly, if any slot is free) for more, so one claim statement serves
            // several jobs; an idle worker claims at once.
            let free = slots.available_permits();
            let batch = (concurrency / 4).max(1);
            if free < batch {
                tokio::select! {
                    () = &mut shutdown => break 'run,
                    _ = slots.acquire_many(batch as u32) => {}
                    () = tokio::time::sleep(CLAIM_LINGER), if free > 0 => {}
                }
            }
            let mut claimed = 0;
            let limit =
                (slots.available_permits() + ctx.pace.room(cfg)).min(places.available_permits());
            if limit > 0 && !queues.is_empty() {
                // One claim over every queue (one writer turn on SQLite); the rotation makes
                // a limit smaller than the queues with work serve them in turn.
                let jobs = match ctx.backend.claim_from(&queues, cfg.lease, limit).await {
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
                        if give_back(&ctx, &job, "shutdown").await {
                            report.released += 1;
                        }
                    }
                    break 'run;
                }
                let claimed_ms = ctx.clock.now_ms();
                for job in jobs {
                    // Only this loop takes places, and it asked for no more than were free.
                    let Ok(held) = places.clone().try_acquire_owned() else {
                        give_back(&ctx, &job, "no place").await;
                        continue;
                    };
                    claimed += 1;
                    ahead.push_back(Ahead {
                        job,
                        held,
                        claimed_ms,
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
        // Claimed ahead and never started: back to the queue, attempts given back.
        for waiting in ahead.drain(..) {
            if give_back(&ctx, &waiting.job, "shutdown").await {
                report.released += 1;
            }
        }
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

/// Releases a job that will not start here (its attempt given back); true when released.
async fn give_back(ctx: &Ctx, job: &ClaimedJob, why: &str) -> bool {
    match ctx.backend.release(&job.lease).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(job = %job.lease.id, error = %e, why,
                "release of an unstarted job failed; the lease will expire");
            false
        }
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
    slot: OwnedSemaphorePermit,
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
    // The slot is free for the next job; the acknowledgement below goes on without it.
    drop(slot);
    let took = started.elapsed();
    ctx.pace.record(took);
    ::metrics::histogram!("queue_processing_seconds", "queue" => queue.clone())
        .record(took.as_secs_f64());
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
