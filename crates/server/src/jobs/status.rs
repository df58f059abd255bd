//! Job status: `GET /jobs/{id}` and the handler wrapper that keeps the status row
//! (`basis_store::jobs`) current.
//!
//! The row is written when the job is submitted (`queued`) and by [`tracked`] around every
//! attempt (`running`, then `done` with the result, `failed` while attempts remain, or
//! `dead`). Only the owner and admins can read a job; anyone else gets 404, so ids cannot
//! be probed.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use basis_auth::role::Role;
use basis_queue::{ClaimedJob, Handler, JobError, handler_fn};
use basis_store::Store;
use basis_store::jobs::{self, JobStatus, StatusChange};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::error::{ApiError, ApiResult};
use crate::http::routes::Routes;
use crate::identity::caller::Authenticated;
use crate::state::AppState;

/// The route of job status.
pub fn router() -> Routes<AppState> {
    Routes::new().get("/jobs/{id}", read)
}

/// A job as its owner sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// What it does (`avatar.thumbnails`, `links.export`, …).
    pub kind: String,
    /// `queued`, `running`, `done`, `failed` (will be retried) or `dead` (gave up).
    pub status: String,
    /// Attempts started so far.
    pub attempts: i64,
    /// What the job produced, once done (for example `downloadUrl`).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Why the last attempt failed, while `failed` or `dead`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads a job's status: its owner or an admin; 404 for everyone else.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, body = JobView),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job, or not yours", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn read(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let principal = caller.require()?;
    if id.len() > 64 {
        return Err(ApiError::NotFound);
    }
    let row = jobs::find(&state.store, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mine = row.owner_id.as_deref() == Some(principal.user_id.as_str());
    if !mine && !principal.role.at_least(Role::Admin) {
        return Err(ApiError::NotFound);
    }
    let failing = matches!(row.status.as_str(), "failed" | "dead");
    Ok(Json(JobView {
        id: row.id,
        kind: row.kind,
        status: row.status,
        attempts: row.attempts,
        result: row.result.and_then(|text| serde_json::from_str(&text).ok()),
        error: row.error.filter(|_| failing),
    }))
}

/// The change after a failed attempt: `dead` when no attempt follows, else `failed`.
fn failed(dead: bool, reason: &str) -> StatusChange<'_> {
    let status = if dead {
        JobStatus::Dead
    } else {
        JobStatus::Failed
    };
    StatusChange {
        error: Some(reason),
        ..StatusChange::to(status)
    }
}

/// The `jobId` a submitted job carries in its payload.
pub fn job_id(job: &ClaimedJob) -> Option<&str> {
    job.payload.get("jobId").and_then(serde_json::Value::as_str)
}

/// Wraps `inner` so the job's status row follows each attempt. A job without `jobId`
/// (internal work) runs unwrapped. A panic in `inner` is recorded and passed on, so the
/// worker still counts it as a failed attempt.
pub fn tracked(store: Store, clock: Arc<dyn Clock>, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
    handler_fn(move |job: ClaimedJob| {
        let (store, clock, inner) = (store.clone(), clock.clone(), inner.clone());
        async move {
            let Some(id) = job_id(&job).map(str::to_owned) else {
                return inner.run(&job).await;
            };
            let retry = |e: basis_store::Error| JobError::Retry(e.to_string());
            let running = StatusChange {
                attempts: Some(job.attempt),
                ..StatusChange::to(JobStatus::Running)
            };
            jobs::set_status(&store, &id, &running, clock.now_ms())
                .await
                .map_err(retry)?;
            let last = job.attempt >= job.max_attempts;
            let (attempt, run) = (job.clone(), inner.clone());
            let outcome = tokio::spawn(async move { run.run(&attempt).await }).await;
            let now = clock.now_ms();
            match outcome {
                Ok(Ok(result)) => {
                    let text = result.as_ref().map(serde_json::Value::to_string);
                    let done = StatusChange {
                        result: text.as_deref(),
                        ..StatusChange::to(JobStatus::Done)
                    };
                    jobs::set_status(&store, &id, &done, now)
                        .await
                        .map_err(retry)?;
                    Ok(result)
                }
                Ok(Err(err)) => {
                    let dead = last || matches!(err, JobError::Fatal(_));
                    let reason = err.to_string();
                    let _ = jobs::set_status(&store, &id, &failed(dead, &reason), now).await;
                    Err(err)
                }
                Err(join) => {
                    let reason = "the job failed unexpectedly";
                    let _ = jobs::set_status(&store, &id, &failed(last, reason), now).await;
                    if join.is_panic() {
                        std::panic::resume_unwind(join.into_panic());
                    }
                    Err(JobError::Retry("the attempt was cancelled".into()))
                }
            }
        }
    })
}
