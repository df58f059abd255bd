//! The queue for admins: figures per queue and the dead letters (list, show, replay,
//! purge). The same operations are on the command line as `basis queue dlq …`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use basis_auth::role::Role;
use basis_queue::{DeadJob, JobId, QueueStats};
use basis_store::jobs::{JobStatus, StatusChange};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Authenticated;
use crate::state::AppState;

/// One queue's figures.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// The queue.
    pub queue: String,
    /// Jobs waiting (ready or scheduled).
    pub depth: u64,
    /// Jobs being run.
    pub running: u64,
    /// How long the oldest ready job has waited, in milliseconds.
    pub oldest_ready_age_ms: u64,
    /// Dead letters.
    pub dead: u64,
}

impl From<QueueStats> for QueueView {
    fn from(s: QueueStats) -> Self {
        Self {
            queue: s.queue,
            depth: s.depth,
            running: s.running,
            oldest_ready_age_ms: s.oldest_ready_age_ms,
            dead: s.dead,
        }
    }
}

/// The answer of `GET /admin/queues`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// The backend (`sqlite`, `postgres`, `amqp`).
    pub backend: &'static str,
    /// Per queue.
    pub queues: Vec<QueueView>,
}

/// A dead letter.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadView {
    /// The queue's id for the job (not the `/jobs/{id}` id, which is in `payload.jobId`).
    pub id: String,
    /// The queue it died on.
    pub queue: String,
    /// Its handler.
    pub kind: String,
    /// Its input.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Attempts it had.
    pub attempts: u32,
    /// Why it died.
    pub last_error: String,
    /// When it died.
    pub died_at: DateTime<Utc>,
}

impl From<DeadJob> for DeadView {
    fn from(d: DeadJob) -> Self {
        Self {
            id: d.id.0,
            queue: d.queue,
            kind: d.kind,
            payload: d.payload,
            attempts: d.attempts,
            last_error: d.last_error,
            died_at: to_datetime(d.died_at_ms),
        }
    }
}

/// A page of dead letters (oldest first).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadList {
    /// The dead letters.
    pub items: Vec<DeadView>,
    /// Always null: ask again after replaying or purging for the next ones.
    pub next_cursor: Option<String>,
}

/// Which dead letters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadQuery {
    /// Only this queue's.
    pub queue: Option<String>,
    /// At most this many (default 20, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

/// The answer of a purge.
#[derive(Debug, Serialize, ToSchema)]
pub struct Purged {
    /// Dead letters deleted.
    pub purged: u64,
}

fn admin(caller: &crate::identity::caller::Caller) -> ApiResult<()> {
    caller.require_role(Role::Admin).map(drop)
}

/// The backend's name and each queue's figures (also recorded as the queue gauges).
pub async fn figures(state: &AppState) -> ApiResult<QueueList> {
    let backend = state.jobs.backend();
    let stats = basis_queue::metrics::record_stats(backend.as_ref()).await?;
    Ok(QueueList {
        backend: backend.name(),
        queues: stats.into_iter().map(QueueView::from).collect(),
    })
}

/// At most `limit` (1 to 100) dead letters, of `queue` only when given, oldest first.
pub async fn dead_letters(
    state: &AppState,
    queue: Option<&str>,
    limit: usize,
) -> ApiResult<Vec<DeadView>> {
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 100"));
    }
    let dead = state.jobs.backend().dead_letters(queue, limit).await?;
    Ok(dead.into_iter().map(DeadView::from).collect())
}

/// The dead letter `id`, or `NotFound`.
pub async fn dead_letter(state: &AppState, id: &str) -> ApiResult<DeadView> {
    let dead = state
        .jobs
        .backend()
        .dead_letter(&JobId(id.to_owned()))
        .await?;
    Ok(dead.ok_or(ApiError::NotFound)?.into())
}

/// Puts dead letter `id` back on its queue with fresh attempts; the job its owner follows
/// (`payload.jobId`) shows as queued again. `NotFound` when there is no such dead letter.
pub async fn replay_dead(state: &AppState, id: &str) -> ApiResult<()> {
    let id = JobId(id.to_owned());
    let backend = state.jobs.backend();
    let dead = backend.dead_letter(&id).await?.ok_or(ApiError::NotFound)?;
    if !backend.replay(&id).await? {
        return Err(ApiError::NotFound);
    }
    if let Some(job_id) = dead.payload.get("jobId").and_then(|v| v.as_str()) {
        let now = state.clock.now_ms();
        let queued = StatusChange::to(JobStatus::Queued);
        basis_store::jobs::set_status(&state.store, job_id, &queued, now).await?;
    }
    tracing::info!(job = %id, kind = %dead.kind, "dead letter replayed");
    Ok(())
}

/// Deletes the dead letters of `queue`, or all of them; how many were deleted.
pub async fn purge_dead(state: &AppState, queue: Option<&str>) -> ApiResult<u64> {
    let purged = state.jobs.backend().purge(queue).await?;
    tracing::info!(purged, queue = ?queue, "dead letters purged");
    Ok(purged)
}

/// Figures per queue (admin).
#[utoipa::path(get, path = "/admin/queues", tag = "admin",
    responses((status = 200, body = QueueList), (status = 401), (status = 403)))]
pub async fn stats(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<QueueList>> {
    admin(&caller)?;
    Ok(Json(figures(&state).await?))
}

/// Dead letters, oldest first (admin).
#[utoipa::path(get, path = "/admin/queues/dead", tag = "admin", params(DeadQuery),
    responses((status = 200, body = DeadList), (status = 400), (status = 401), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<DeadQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<DeadList>> {
    admin(&caller)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let items = dead_letters(&state, query.queue.as_deref(), query.limit.unwrap_or(20)).await?;
    Ok(Json(DeadList {
        items,
        next_cursor: None,
    }))
}

/// One dead letter (admin).
#[utoipa::path(get, path = "/admin/queues/dead/{id}", tag = "admin",
    params(("id" = String, Path, description = "The dead letter's id")),
    responses((status = 200, body = DeadView), (status = 401), (status = 403), (status = 404)))]
pub async fn show(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<DeadView>> {
    admin(&caller)?;
    Ok(Json(dead_letter(&state, &id).await?))
}

/// Puts a dead letter back on its queue with fresh attempts (admin): 202.
#[utoipa::path(post, path = "/admin/queues/dead/{id}/replay", tag = "admin",
    params(("id" = String, Path, description = "The dead letter's id")),
    responses((status = 202, description = "Queued again"), (status = 401), (status = 403), (status = 404)))]
pub async fn replay(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin(&caller)?;
    replay_dead(&state, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Deletes dead letters, of one queue or all (admin).
#[utoipa::path(delete, path = "/admin/queues/dead", tag = "admin",
    params(("queue" = Option<String>, Query, description = "Only this queue's (a purge takes no limit)")),
    responses((status = 200, body = Purged), (status = 400), (status = 401), (status = 403)))]
pub async fn purge(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<DeadQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Purged>> {
    admin(&caller)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let purged = purge_dead(&state, query.queue.as_deref()).await?;
    Ok(Json(Purged { purged }))
}
