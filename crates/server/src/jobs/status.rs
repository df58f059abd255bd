//! Job status: `GET /jobs/{id}`, the table behind it, and the handler wrapper that keeps
//! it current.
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
use basis_store::{Store, on_pool};
use serde::Serialize;
use utoipa::ToSchema;

use crate::caller::Authenticated;
use crate::clock::Clock;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

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

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    kind: String,
    owner_id: Option<String>,
    status: String,
    attempts: i64,
    result: Option<String>,
    error: Option<String>,
}

/// Records a submitted job as `queued`.
pub async fn create(
    store: &Store,
    id: &str,
    kind: &str,
    owner: Option<&str>,
    now: i64,
) -> basis_store::Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query(
            "INSERT INTO jobs (id, kind, owner_id, status, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, 'queued', 0, $4, $4)",
        )
        .bind(id).bind(kind).bind(owner).bind(now)
        .execute(pool).await.map(drop)
    })?;
    Ok(())
}

/// Removes the record of a job that could not be enqueued.
pub async fn forget(store: &Store, id: &str) -> basis_store::Result<()> {
    on_pool!(store, write, pool => {
        sqlx::query("DELETE FROM jobs WHERE id = $1").bind(id).execute(pool).await.map(drop)
    })?;
    Ok(())
}

/// Sets a job's status (and, when given, its attempts, result and error).
pub async fn set(
    store: &Store,
    id: &str,
    status: &str,
    attempts: Option<u32>,
    result: Option<&serde_json::Value>,
    error: Option<&str>,
    now: i64,
) -> basis_store::Result<()> {
    let result = result.map(serde_json::Value::to_string);
    on_pool!(store, write, pool => {
        sqlx::query(
            "UPDATE jobs SET status = $2, attempts = COALESCE($3, attempts), \
             result = COALESCE($4, result), error = $5, updated_at = $6 WHERE id = $1",
        )
        .bind(id).bind(status).bind(attempts.map(i64::from)).bind(result).bind(error).bind(now)
        .execute(pool).await.map(drop)
    })?;
    Ok(())
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
    let row: Option<Row> = on_pool!(state.store, read, pool => {
        sqlx::query_as(
            "SELECT id, kind, owner_id, status, attempts, result, error FROM jobs WHERE id = $1",
        )
        .bind(&id).fetch_optional(pool).await
    })
    .map_err(basis_store::Error::from)?;
    let row = row.ok_or(ApiError::NotFound)?;
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
            set(
                &store,
                &id,
                "running",
                Some(job.attempt),
                None,
                None,
                clock.now_ms(),
            )
            .await
            .map_err(retry)?;
            let last = job.attempt >= job.max_attempts;
            let (attempt, run) = (job.clone(), inner.clone());
            let outcome = tokio::spawn(async move { run.run(&attempt).await }).await;
            let now = clock.now_ms();
            match outcome {
                Ok(Ok(result)) => {
                    set(&store, &id, "done", None, result.as_ref(), None, now)
                        .await
                        .map_err(retry)?;
                    Ok(result)
                }
                Ok(Err(err)) => {
                    let dead = last || matches!(err, JobError::Fatal(_));
                    let status = if dead { "dead" } else { "failed" };
                    let _ = set(&store, &id, status, None, None, Some(&err.to_string()), now).await;
                    Err(err)
                }
                Err(join) => {
                    let status = if last { "dead" } else { "failed" };
                    let reason = "the job failed unexpectedly";
                    let _ = set(&store, &id, status, None, None, Some(reason), now).await;
                    if join.is_panic() {
                        std::panic::resume_unwind(join.into_panic());
                    }
                    Err(JobError::Retry("the attempt was cancelled".into()))
                }
            }
        }
    })
}
