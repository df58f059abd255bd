//! Request-reply over any backend: the request carries a reply queue of its own and a
//! correlation id; the worker that handles it enqueues the outcome on that queue, and the
//! requester waits there until the reply arrives or the timeout passes.
//!
//! The timeout is real time (it bounds how long a caller waits), unlike leases and delays,
//! which follow the injected clock. A reply that comes after its requester gave up stays on
//! the dead reply queue until purged; requests are meant for short, fast work.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Backend, ClaimedJob, Error, NewJob, Result};

/// The kind of the jobs that carry replies.
pub const REPLY_KIND: &str = "reply";

/// Sends `payload` as a `kind` job to `queue` and waits up to `timeout` for the handler's
/// result. Errors: [`Error::Timeout`], or [`Error::Remote`] with the handler's last error
/// when the request died. (Backends may answer natively through [`Backend::request`].)
pub async fn request(
    backend: &dyn Backend,
    queue: &str,
    kind: &str,
    payload: Value,
    timeout: Duration,
) -> Result<Value> {
    backend.request(queue, kind, payload, timeout).await
}

/// The generic implementation behind [`Backend::request`]'s default.
pub async fn request_via_queue<B: Backend + ?Sized>(
    backend: &B,
    queue: &str,
    kind: &str,
    payload: Value,
    timeout: Duration,
) -> Result<Value> {
    let correlation: u128 = rand::random();
    let correlation = format!("{correlation:032x}");
    let reply_queue = format!("reply.{correlation}");
    let mut job = NewJob::new(queue, kind, payload);
    job.reply_to = Some(reply_queue.clone());
    job.correlation_id = Some(correlation.clone());
    backend.enqueue(job).await?;
    let wait = async {
        loop {
            for reply in backend
                .claim(&reply_queue, Duration::from_secs(60), 4)
                .await?
            {
                backend.complete(&reply.lease, None).await?;
                if reply.correlation_id.as_deref() != Some(correlation.as_str()) {
                    continue; // not ours: nothing else should ever be on this queue
                }
                return match (reply.payload.get("ok"), reply.payload.get("error")) {
                    (Some(ok), _) => Ok(ok.clone()),
                    (None, Some(err)) => Err(Error::Remote(err.as_str().unwrap_or("").to_owned())),
                    (None, None) => Err(Error::Backend("a reply without ok or error".into())),
                };
            }
            backend
                .wait_for_work(&reply_queue, Duration::from_millis(200))
                .await;
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| Error::Timeout(timeout))?
}

/// Enqueues a handled request's outcome on its reply queue (worker side). Delivery is at
/// least once, like everything else: the requester takes the first reply it sees.
pub(crate) async fn send(backend: &dyn Backend, job: &ClaimedJob, outcome: Result<Value, String>) {
    let Some(reply_to) = &job.reply_to else {
        return;
    };
    let payload = match outcome {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "error": e }),
    };
    let mut reply = NewJob::new(reply_to.clone(), REPLY_KIND, payload);
    reply.correlation_id = job.correlation_id.clone();
    reply.max_attempts = 1;
    if let Err(e) = backend.enqueue(reply).await {
        tracing::warn!(job = %job.lease.id, error = %e, "reply could not be sent");
    }
}
