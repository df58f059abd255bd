//! What a worker runs: a [`Handler`] per job kind.

use std::future::Future;
use std::sync::Arc;

use crate::job::ClaimedJob;

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (after backoff), until the attempts run out.
    #[error("{0}")]
    Retry(String),
    /// Never worth retrying (a payload that does not deserialise, a target that is gone):
    /// the job goes to the dead letters at once with this reason.
    #[error("{0}")]
    Fatal(String),
}

impl JobError {
    /// A payload that does not deserialise into what the handler expects: a poison message.
    pub fn bad_payload(err: impl std::fmt::Display) -> Self {
        JobError::Fatal(format!("payload does not deserialise: {err}"))
    }
}

/// The work for one job kind. Handlers must be idempotent: an attempt may run again after a
/// crash or a lost lease, and running twice must have the effect of running once.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt; `Ok` carries the job's result (stored, and sent as the reply in
    /// request-reply).
    async fn run(&self, job: &ClaimedJob) -> Result<Option<serde_json::Value>, JobError>;
}

/// A handler from an async closure.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(ClaimedJob) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<serde_json::Value>, JobError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

struct FnHandler<F>(F);

#[async_trait::async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(ClaimedJob) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<serde_json::Value>, JobError>> + Send + 'static,
{
    async fn run(&self, job: &ClaimedJob) -> Result<Option<serde_json::Value>, JobError> {
        (self.0)(job.clone()).await
    }
}
