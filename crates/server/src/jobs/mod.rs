//! The product's background work on the queue (`basis-queue`).
//!
//! # Where things are
//!
//! - [`Jobs`]: the queue as request handlers use it: [`Jobs::submit`] enqueues work a user
//!   asked for and can follow at `GET /jobs/{id}`; [`Jobs::enqueue`] adds internal work.
//! - [`status`]: the status table behind `GET /jobs/{id}` and the handler wrapper that
//!   keeps it current. The server records status itself, so it reads the same on every
//!   backend (RabbitMQ keeps no per-job state).
//! - [`context`]: what every job handler is given.
//! - [`config`]: the flags.
//! - [`mail`]: the mail jobs (password reset, new comment) and the comment notifier.
//! - The other handlers live with their resource, each idempotent (a second delivery has
//!   the effect of one): click batches and CSV exports in `links`, avatar thumbnails in
//!   `accounts`. The registry that names them all, the backend `--queue-url` chooses and
//!   the workers are composed above every resource, in `workers` (and `basis queue dlq …`
//!   in `queue_cli`); dead letters for admins are in `admin`.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use basis_queue::{Backend, Enqueued, NewJob};
use basis_store::Store;
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::error::{ApiError, ApiResult};

pub mod config;
pub mod context;
pub mod mail;
pub mod status;

pub use config::JobsConfig;

/// Queue of click batches (many small jobs; kept apart so slow work never delays counts).
pub const CLICKS_QUEUE: &str = "clicks";
/// Queue of outgoing mail.
pub const MAIL_QUEUE: &str = "mail";
/// Queue of image work.
pub const MEDIA_QUEUE: &str = "media";
/// Queue of data exports.
pub const EXPORTS_QUEUE: &str = "exports";
/// Queue of the ledger's projection jobs (kept apart so exports never delay read models).
pub const LEDGER_QUEUE: &str = "ledger";
/// Queue of checkout saga steps (kept apart so a slow payment provider never delays mail).
pub const SAGAS_QUEUE: &str = "sagas";
/// The outbox events webhooks consume (the `events` topic's `webhooks` group).
pub const WEBHOOK_EVENTS_QUEUE: &str = "events.webhooks";
/// Queue of webhook delivery attempts.
pub const WEBHOOKS_QUEUE: &str = "webhooks";
/// The outbox events the confirmation mail is sent from (the `events` topic's `shop-mail`
/// group).
pub const SHOP_MAIL_EVENTS_QUEUE: &str = "events.shop-mail";
/// Every queue the product's workers consume.
pub const QUEUES: [&str; 9] = [
    CLICKS_QUEUE,
    MAIL_QUEUE,
    MEDIA_QUEUE,
    EXPORTS_QUEUE,
    LEDGER_QUEUE,
    SAGAS_QUEUE,
    WEBHOOK_EVENTS_QUEUE,
    WEBHOOKS_QUEUE,
    SHOP_MAIL_EVENTS_QUEUE,
];

/// The queue as the request side uses it.
#[derive(Debug, Clone)]
pub struct Jobs {
    backend: Arc<dyn Backend>,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Jobs {
    /// Jobs on `backend`, with their status in `store`.
    pub fn new(backend: Arc<dyn Backend>, store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            backend,
            store,
            clock,
        }
    }

    /// The backend (admin API, metrics).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Enqueues internal work (no status row).
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, basis_queue::Error> {
        self.backend.enqueue(job).await
    }

    /// Enqueues work that `owner` asked for and may follow at `GET /jobs/{id}`. The payload
    /// gets the job's id as `jobId`; returns that id. `id` is chosen by the caller when it
    /// must be known before (rows that name the job); otherwise pass `None`.
    pub async fn submit(
        &self,
        queue: &str,
        kind: &str,
        owner: &str,
        id: Option<String>,
        mut payload: serde_json::Map<String, serde_json::Value>,
        max_attempts: u32,
    ) -> ApiResult<String> {
        let id = id.unwrap_or_else(new_id);
        let now = self.clock.now_ms();
        basis_store::jobs::create(&self.store, &id, kind, Some(owner), now).await?;
        payload.insert("jobId".into(), id.clone().into());
        let job = NewJob {
            owner: Some(owner.to_owned()),
            max_attempts,
            // A retried request never makes the same job twice.
            dedup_key: Some(format!("job:{id}")),
            ..NewJob::new(queue, kind, payload.into())
        };
        if let Err(err) = self.backend.enqueue(job).await {
            let _ = basis_store::jobs::forget(&self.store, &id).await;
            return Err(err.into());
        }
        metrics::counter!("basis_jobs_submitted_total", "kind" => kind.to_owned()).increment(1);
        Ok(id)
    }
}

/// A fresh job id: 128 random bits in hex (unguessable, so ids reveal nothing).
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The body of a `202 Accepted` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobAccepted {
    /// Follow it at `/jobs/{jobId}`.
    pub job_id: String,
}

/// `202 Accepted`, `Location: /jobs/{id}` and `{"jobId"}`.
pub fn accepted(job_id: String) -> Response {
    let location = HeaderValue::from_str(&format!("/jobs/{job_id}"))
        .unwrap_or_else(|_| HeaderValue::from_static("/jobs"));
    let mut response = (StatusCode::ACCEPTED, Json(JobAccepted { job_id })).into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response
}

impl From<basis_queue::Error> for ApiError {
    fn from(err: basis_queue::Error) -> Self {
        match err {
            basis_queue::Error::Unavailable(_) => {
                tracing::warn!(error = %err, "the queue is unavailable");
                ApiError::Unavailable("the job queue is unavailable; try again shortly".into())
            }
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}
