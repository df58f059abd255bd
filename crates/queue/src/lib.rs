//! Durable background work for Basis: jobs (point-to-point), topics (publish-subscribe) and
//! request-reply, on SQLite, PostgreSQL or RabbitMQ behind one [`Backend`] trait.
//!
//! # Where things are
//!
//! - [`Backend`]: what every engine provides: enqueue, claim with a lease (from one queue,
//!   or from several in one go, fairly: [`Backend::claim_from`], shared out by `fair.rs`),
//!   heartbeat, complete / retry / bury fenced by the attempt's token, topics whose groups
//!   may take some kinds only, dead letters, stats.
//! - [`job`]: the value types that cross the trait ([`NewJob`], [`ClaimedJob`], [`Lease`],
//!   [`JobInfo`], …).
//! - [`handler`]: [`Handler`], the work for one job kind, and [`JobError`].
//! - [`Clock`] (from `basis-clock`): the injected time source; leases, delays and backoff read it.
//! - [`sqlite`] and [`postgres`]: the SQL engines; [`connect`] picks one by URL.
//! - [`worker`]: the runtime that claims, heartbeats, retries with backoff and shuts down
//!   gracefully, acknowledging finished jobs in batches (`acker.rs`; the batch statements
//!   of the SQL engines are in `batch.rs`); [`reply`]: request-reply on top of any backend; [`metrics`]: the gauges.
//! - [`trace`]: the enqueue's producer span and the run's consumer span, one trace joined
//!   by the W3C `traceparent` every backend carries with the job.
//!
//! # Schema and migrations
//!
//! The queue owns its tables (`queue_jobs`, `queue_done`, `queue_dead`,
//! `queue_subscriptions`) and creates them with its own sqlx migrator (`migrations/<engine>/`,
//! versions from 1001) in the same database as the store. Both migrators share sqlx's
//! `_sqlx_migrations` table and run with `ignore_missing`, so each tolerates the other's
//! rows; the version ranges keep them apart. One bookkeeping table instead of two keeps
//! `sqlx migrate info` and backups telling the whole story of the database.
//!
//! # Delivery rules (every backend)
//!
//! - At least once: a job leaves the queue only when a worker that still holds its lease
//!   completes it, or when it is moved to the dead letters.
//! - A claim counts the attempt and hands out a fresh fencing token; `complete`, `retry`,
//!   `bury` and `heartbeat` with an older token fail with [`Error::LeaseLost`], so a worker
//!   whose lease expired can never finish or fail a job another worker now holds.
//! - A lease not renewed by its deadline makes the job claimable again.
//! - Retries are scheduled by the caller (the worker computes backoff); the next run time is
//!   stored with the job, so a crash does not reset the schedule.
//! - A job whose lease expires on its last allowed attempt goes to the dead letters at the
//!   next claim instead of running once more.

mod acker;
pub mod amqp;
mod batch;
mod fair;
pub mod handler;
pub mod job;
pub mod metrics;
pub mod postgres;
pub mod reply;
pub mod sqlite;
mod topic;
pub mod trace;
mod wake;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

pub use basis_clock::{Clock, ManualClock, SystemClock};
pub use batch::Ack;
pub use handler::{Handler, JobError, handler_fn};
pub use job::{
    ClaimedJob, DeadJob, Enqueued, JobId, JobInfo, JobStatus, Lease, Message, NewJob, QueueStats,
};

/// The errors a queue operation can end in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The attempt's lease expired or was taken over: its token is stale.
    #[error("the lease on job {0} is no longer held")]
    LeaseLost(JobId),
    /// The backend could not be reached or did not answer in time.
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
    /// The operation is not offered by this backend.
    #[error("not supported by the {0} backend")]
    Unsupported(&'static str),
    /// The input was refused (an empty queue name, a payload that does not serialise…).
    #[error("invalid job: {0}")]
    Invalid(String),
    /// Anything else the backend reported.
    #[error("queue backend error: {0}")]
    Backend(String),
    /// Request-reply: no reply came within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// Request-reply: the handler failed the request for good; its last error.
    #[error("the request failed: {0}")]
    Remote(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => Error::Unavailable(e.to_string()),
            other => Error::Backend(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Backend(format!("queue migration failed: {e}"))
    }
}

/// Shorthand for queue results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One queue engine. Implementations are cheap to share (`Arc<dyn Backend>`).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and errors (`sqlite`, `postgres`, `amqp`).
    fn name(&self) -> &'static str;

    /// Adds a job. With a deduplication key that an unfinished job already holds, nothing is
    /// added and the existing job's id comes back with `duplicate: true`.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued>;

    /// Adds several jobs, one [`Enqueued`] per job in order; deduplication keys apply as in
    /// [`Backend::enqueue`], also between jobs of the same call. Every job is validated
    /// first: one invalid job refuses the whole call. The SQL engines insert them in one
    /// statement; the default enqueues one by one.
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        for job in &jobs {
            validate(job)?;
        }
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            out.push(self.enqueue(job).await?);
        }
        Ok(out)
    }

    /// Completes several attempts, answering for each: an ack whose lease is lost is refused
    /// with [`Error::LeaseLost`] while the others go through. The SQL engines acknowledge them
    /// in one fenced statement; the default completes one by one.
    async fn complete_many(&self, acks: &[Ack]) -> Result<Vec<Result<()>>> {
        let mut out = Vec::with_capacity(acks.len());
        for (lease, result) in acks {
            out.push(self.complete(lease, result.clone()).await);
        }
        Ok(out)
    }

    /// Claims up to `limit` ready jobs of `queue` (highest priority first, then oldest run
    /// time), each leased for `lease`. Counts the attempt and issues a new fencing token.
    async fn claim(&self, queue: &str, lease: Duration, limit: usize) -> Result<Vec<ClaimedJob>>;

    /// Claims up to `limit` ready jobs from any of `queues` in one go, as [`Backend::claim`]
    /// would from each (the same attempt counting, fencing tokens, lease-expiry accounting
    /// and burial of a job whose lease expired on its last attempt).
    ///
    /// The limit is shared round-robin: the first ready job of each queue in the order
    /// given, then the second of each, and so on, so a queue with a backlog cannot starve
    /// the others; when `limit` is smaller than the number of queues with ready jobs, the
    /// earlier queues win, and a caller that rotates `queues` between claims (the worker
    /// does) serves them all in turn. Jobs come back in that round-robin order.
    ///
    /// The SQL engines claim in one transaction (SQLite: one turn at the single writer;
    /// PostgreSQL: one statement); the default claims queue by queue, each from what the
    /// earlier ones left of `limit`, and a queue whose claim fails is skipped (logged) so
    /// the others still serve: it is an error only when nothing was claimed.
    async fn claim_from(
        &self,
        queues: &[String],
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedJob>> {
        let mut claimed = Vec::new();
        let mut failed = None;
        for queue in queues {
            let left = limit.saturating_sub(claimed.len());
            if left == 0 {
                break;
            }
            // One queue that cannot be claimed from (its broker queue lost in a restart,
            // say) must not hold up the others, nor lose what they gave.
            match self.claim(queue, lease, left).await {
                Ok(jobs) => claimed.extend(jobs),
                Err(e) => {
                    tracing::warn!(queue, error = %e, "claim failed");
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if claimed.is_empty() => Err(e),
            _ => Ok(claimed),
        }
    }

    /// Extends a held lease by `lease` from now.
    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<()>;

    /// Finishes the attempt successfully, storing `result` for [`Backend::job`].
    async fn complete(&self, lease: &Lease, result: Option<serde_json::Value>) -> Result<()>;

    /// Fails the attempt; the job runs again at `run_at_ms` (Unix milliseconds).
    async fn retry(&self, lease: &Lease, error: &str, run_at_ms: i64) -> Result<()>;

    /// Fails the job for good: it moves to the dead letters with `error`.
    async fn bury(&self, lease: &Lease, error: &str) -> Result<()>;

    /// Gives the job back unfinished (graceful shutdown): ready again now, and the attempt
    /// this lease counted is not held against it.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Waits until `queue` may have ready work or `timeout` passes (a notification where the
    /// engine has one, else the timeout).
    async fn wait_for_work(&self, queue: &str, timeout: Duration);

    /// The job's current state, if the backend keeps one.
    async fn job(&self, id: &JobId) -> Result<Option<JobInfo>>;

    /// Registers `group` as a subscriber of every kind of `topic`: from now on every message
    /// published to the topic is also delivered to the queue [`topic_queue`]`(topic, group)`.
    /// Replaces a kind list an earlier [`Backend::subscribe_kinds`] gave.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<()> {
        self.subscribe_kinds(topic, group, &[]).await
    }

    /// Registers `group` as a subscriber of `topic` for the messages of `kinds` only (empty:
    /// every kind). Subscribing again replaces the list, so a start-up that subscribes with
    /// the kinds its code handles today is idempotent and follows changes.
    ///
    /// The SQL engines filter when they fan a message out: a group's queue never holds the
    /// kinds it did not ask for. RabbitMQ's topics are fanout exchanges, which route by
    /// no key: there the group's queue receives every kind and its consumer must ignore the
    /// ones it does not handle.
    async fn subscribe_kinds(&self, topic: &str, group: &str, kinds: &[&str]) -> Result<()>;

    /// Publishes a message to every subscriber group of `topic`; returns how many groups.
    async fn publish(&self, topic: &str, kind: &str, payload: serde_json::Value) -> Result<usize>;

    /// Publishes `messages` to `topic` in order, each as [`Backend::publish`] would; returns
    /// how many went out. A message whose kind no job could have refuses the whole call
    /// before anything is sent. The SQL engines write all of them in one statement (all or
    /// none).
    /// The default publishes one by one and stops at the first failure, which it returns
    /// only when nothing went out, so a caller can retry from the first message not sent.
    async fn publish_many(&self, topic: &str, messages: &[Message]) -> Result<usize> {
        topic::validate_all(topic, messages)?;
        for (sent, m) in messages.iter().enumerate() {
            // A message with a context of its own is published in a span that continues it.
            let span = match &m.traceparent {
                Some(parent) => {
                    let span = tracing::debug_span!(target: "basis_queue::trace", "publish");
                    trace::continue_trace(&span, parent);
                    span
                }
                None => tracing::Span::current(),
            };
            let out = self
                .publish(topic, &m.kind, m.payload.clone())
                .instrument(span)
                .await;
            if let Err(e) = out {
                return if sent == 0 { Err(e) } else { Ok(sent) };
            }
        }
        Ok(messages.len())
    }

    /// Dead letters, oldest first, optionally of one queue.
    async fn dead_letters(&self, queue: Option<&str>, limit: usize) -> Result<Vec<DeadJob>>;

    /// One dead letter.
    async fn dead_letter(&self, id: &JobId) -> Result<Option<DeadJob>>;

    /// Puts a dead letter back on its queue with a fresh attempt count; false if unknown.
    async fn replay(&self, id: &JobId) -> Result<bool>;

    /// Deletes dead letters (of one queue, or all); returns how many.
    async fn purge(&self, queue: Option<&str>) -> Result<u64>;

    /// Depth, oldest ready job's age and dead letters per queue.
    async fn stats(&self) -> Result<Vec<QueueStats>>;

    /// Request-reply: enqueues a `kind` job on `queue` and waits up to `timeout` for its
    /// handler's result. The default goes through a reply queue and a correlation id
    /// ([`reply::request_via_queue`]); an engine with a native way may override it.
    async fn request(
        &self,
        queue: &str,
        kind: &str,
        payload: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        reply::request_via_queue(self, queue, kind, payload, timeout).await
    }
}

/// The queue a topic's subscriber group consumes.
pub fn topic_queue(topic: &str, group: &str) -> String {
    format!("{topic}.{group}")
}

/// How a database backend opens its own pools.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// Statements that run at least this long go to the log (target `sqlx::query`, WARN,
    /// with their SQL and duration but no bound values); `None` logs none.
    pub slow_statement: Option<Duration>,
}

impl ConnectOptions {
    /// sqlx's slow-statement log settings for these options.
    fn slow_log(&self) -> (log::LevelFilter, Duration) {
        match self.slow_statement {
            Some(threshold) => (log::LevelFilter::Warn, threshold),
            None => (log::LevelFilter::Off, Duration::MAX),
        }
    }
}

/// Opens the backend a URL names and installs its tables: `sqlite:` (the embedded default,
/// the data's own file), `postgres://` / `postgresql://`. `amqp://` is answered by the
/// RabbitMQ backend where it is built in.
pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Arc<dyn Backend>> {
    connect_with(url, clock, ConnectOptions::default()).await
}

/// [`connect`], with the database pools opened as `options` say.
pub async fn connect_with(
    url: &str,
    clock: Arc<dyn Clock>,
    options: ConnectOptions,
) -> Result<Arc<dyn Backend>> {
    if url.starts_with("sqlite:") {
        let queue = sqlite::SqliteQueue::connect_with(url, clock, options).await?;
        queue.install().await?;
        Ok(Arc::new(queue))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let queue = postgres::PostgresQueue::connect_with(url, clock, options).await?;
        queue.install().await?;
        Ok(Arc::new(queue))
    } else if url.starts_with("amqp://") {
        Ok(Arc::new(amqp::AmqpQueue::connect(url, clock).await?))
    } else if url.starts_with("amqps://") {
        // lapin is built without TLS (see the workspace Cargo.toml).
        Err(Error::Unsupported("amqps"))
    } else {
        Err(Error::Invalid(format!(
            "expected a sqlite:, postgres:// or amqp:// queue URL, got {:?}",
            url.split(':').next().unwrap_or_default()
        )))
    }
}

/// Checks what every backend refuses alike.
pub(crate) fn validate(job: &NewJob) -> Result<()> {
    if job.queue.trim().is_empty() || job.queue.len() > 200 {
        return Err(Error::Invalid(
            "the queue name must have 1 to 200 characters".into(),
        ));
    }
    if job.kind.trim().is_empty() || job.kind.len() > 200 {
        return Err(Error::Invalid(
            "the job kind must have 1 to 200 characters".into(),
        ));
    }
    if job.max_attempts == 0 {
        return Err(Error::Invalid("max_attempts must be at least 1".into()));
    }
    Ok(())
}

/// Parses a SQL engine's job id; `None` for text that cannot be one of ours.
pub(crate) fn sql_id(id: &JobId) -> Option<i64> {
    id.0.parse().ok()
}

/// The SQL id a lease is for; a lease on an id that cannot be ours holds nothing.
pub(crate) fn lease_id(lease: &Lease) -> Result<i64> {
    sql_id(&lease.id).ok_or_else(|| Error::LeaseLost(lease.id.clone()))
}

/// A stored JSON column. Only this crate writes these columns, always valid JSON; odd text
/// is kept visible as a string rather than lost.
pub(crate) fn stored_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}
