//! The queue's flags (flattened into [`crate::Config`]).

use std::time::Duration;

/// Whether `basis serve` also runs workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Workers {
    /// Workers run inside `serve` (the embedded mode: one process does everything).
    #[default]
    On,
    /// Only `basis worker` processes run jobs.
    Off,
}

/// Queue and worker settings.
#[derive(Debug, Clone, clap::Args)]
pub struct JobsConfig {
    /// The queue: `sqlite:…`, `postgres://…` or `amqp://…` (default: the database in use).
    #[arg(long, env = "BASIS_QUEUE_URL")]
    pub queue_url: Option<String>,

    /// `off` runs no workers inside `basis serve` (run `basis worker` instead).
    #[arg(long, env = "BASIS_WORKERS", value_enum, default_value = "on")]
    pub workers: Workers,

    /// Jobs one worker process runs at the same time.
    #[arg(long, env = "BASIS_WORKER_CONCURRENCY", default_value_t = 4)]
    pub worker_concurrency: usize,

    /// Most jobs a worker process claims beyond its free slots, to start as slots free up
    /// (fewer while jobs run long: at most what it gets through in a quarter of the lease).
    /// A claim is a turn at SQLite's single writer, so short jobs keep up with a write-heavy
    /// load only when claimed many at a time; 0 claims only what can start at once.
    #[arg(long, env = "BASIS_WORKER_PREFETCH", default_value_t = 256)]
    pub worker_prefetch: usize,

    /// How long a claimed job is held before another worker may take it over, in
    /// milliseconds (renewed by heartbeat while the job runs).
    #[arg(long, env = "BASIS_JOB_LEASE_MS", default_value_t = 30_000)]
    pub job_lease_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            queue_url: None,
            workers: Workers::On,
            worker_concurrency: 4,
            worker_prefetch: 256,
            job_lease_ms: 30_000,
        }
    }
}

impl JobsConfig {
    /// The lease of a claimed job.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.job_lease_ms.max(1_000))
    }

    /// The queue URL in effect: the flag, else the database's URL.
    pub fn queue_url(&self, database_url: &str) -> String {
        match self.queue_url.as_deref() {
            Some(url) if !url.is_empty() => url.to_owned(),
            _ => database_url.to_owned(),
        }
    }
}
