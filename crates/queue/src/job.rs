//! The values that cross the [`Backend`](crate::Backend) trait.

use serde::{Deserialize, Serialize};

/// A job's id: opaque text (a decimal number on the SQL engines).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One message of [`crate::Backend::publish_many`]: each subscriber group's queue gets a job
/// of this kind and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// What happened; the kind of the jobs it becomes.
    pub kind: String,
    /// The data the subscribers receive.
    pub payload: serde_json::Value,
    /// The W3C `traceparent` of the trace it continues; `None` takes the publish's own.
    pub traceparent: Option<String>,
}

/// A job to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The queue it goes on.
    pub queue: String,
    /// What the handler is (a worker dispatches on it).
    pub kind: String,
    /// The handler's input.
    pub payload: serde_json::Value,
    /// Higher runs first among ready jobs.
    pub priority: i16,
    /// Not before this time (Unix milliseconds); `None` is now.
    pub run_at_ms: Option<i64>,
    /// At most one unfinished job holds a key.
    pub dedup_key: Option<String>,
    /// Attempts before the job is dead-lettered.
    pub max_attempts: u32,
    /// Who may read the job's status (a user id), if anyone besides admins.
    pub owner: Option<String>,
    /// Request-reply: where the handler's result is sent.
    pub reply_to: Option<String>,
    /// Request-reply: echoed on the reply so the requester can match it.
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` of the trace the job continues. Left `None`, the enqueue fills
    /// it with its own span's context when traces are exported ([`crate::trace`]).
    pub traceparent: Option<String>,
}

impl NewJob {
    /// A job with the defaults: priority 0, now, no key, 5 attempts.
    pub fn new(
        queue: impl Into<String>,
        kind: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            queue: queue.into(),
            kind: kind.into(),
            payload,
            priority: 0,
            run_at_ms: None,
            dedup_key: None,
            max_attempts: 5,
            owner: None,
            reply_to: None,
            correlation_id: None,
            traceparent: None,
        }
    }
}

/// What [`Backend::enqueue`](crate::Backend::enqueue) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The new job, or the unfinished job that holds the same deduplication key.
    pub id: JobId,
    /// True when nothing was added because of the deduplication key.
    pub duplicate: bool,
}

/// The right to finish one attempt of a job: its id and the attempt's fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub id: JobId,
    /// The queue it was claimed from.
    pub queue: String,
    /// Increases with every claim; only the latest one is accepted.
    pub token: i64,
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The lease to finish it with.
    pub lease: Lease,
    /// The handler.
    pub kind: String,
    /// The handler's input.
    pub payload: serde_json::Value,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// When the job was first enqueued (Unix milliseconds).
    pub enqueued_at_ms: i64,
    /// When this attempt was due to start (Unix milliseconds), for start latency.
    pub run_at_ms: i64,
    /// Request-reply: where the result goes.
    pub reply_to: Option<String>,
    /// Request-reply: the requester's correlation id.
    pub correlation_id: Option<String>,
    /// The job's owner, if any.
    pub owner: Option<String>,
    /// The W3C `traceparent` it was enqueued with, if any: its run continues that trace.
    pub traceparent: Option<String>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting to run (first time).
    Queued,
    /// Claimed by a worker.
    Running,
    /// Finished successfully.
    Done,
    /// An attempt failed; waiting to run again.
    Failed,
    /// Out of attempts (or unprocessable): in the dead letters.
    Dead,
}

/// A job's state as [`Backend::job`](crate::Backend::job) reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInfo {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its handler.
    pub kind: String,
    /// Where it is.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// What the handler returned, once done.
    pub result: Option<serde_json::Value>,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Who may read it.
    pub owner: Option<String>,
}

/// A job in the dead letters.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadJob {
    /// The job.
    pub id: JobId,
    /// The queue it died on.
    pub queue: String,
    /// Its handler.
    pub kind: String,
    /// Its input, unchanged.
    pub payload: serde_json::Value,
    /// Attempts it had.
    pub attempts: u32,
    /// Why it died.
    pub last_error: String,
    /// When it died (Unix milliseconds).
    pub died_at_ms: i64,
    /// The trace context the job carried (W3C `traceparent`), which a replay keeps.
    pub traceparent: Option<String>,
}

/// One queue's figures for metrics and the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Jobs waiting (ready or scheduled).
    pub depth: u64,
    /// Jobs claimed and not finished.
    pub running: u64,
    /// Age of the oldest ready job, milliseconds (0 when none).
    pub oldest_ready_age_ms: u64,
    /// Dead letters.
    pub dead: u64,
}
