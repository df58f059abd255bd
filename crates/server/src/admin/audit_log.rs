//! Security audit events: stored without secrets, readable by admins.

use axum::extract::{Query, State};
use axum::response::Response;
use basis_auth::role::Role;
use basis_store::audit;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult};
use crate::http::rest::{List, Page, list_response};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// One event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// The event's id (the list is newest first).
    pub id: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened: `login.succeeded`, `login.failed`, `login.throttled`,
    /// `refresh.reused`, `role.changed`, `api_key.created`, `password.changed`, …
    pub kind: String,
    /// The account concerned, if known.
    pub user_id: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// Context (never a secret).
    pub detail: Option<String>,
}

/// The audit log, newest first (admins).
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(Page),
    responses((status = 200, body = List<AuditEvent>), (status = 400, body = crate::error::Problem, content_type = "application/problem+json"), (status = 401), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit()?;
    let list = events(&state, page.cursor.as_deref(), limit).await?;
    Ok(list_response("/admin/audit", limit, list))
}

/// A page of at most `limit` events, newest first, before `cursor` (an event id from the
/// previous page), with the next page's cursor.
pub async fn events(
    state: &AppState,
    cursor: Option<&str>,
    limit: i64,
) -> ApiResult<List<AuditEvent>> {
    let before = crate::http::rest::id_cursor(cursor, i64::MAX)?;
    let mut rows = audit::list(&state.store, before, limit + 1).await?;
    let next_cursor = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string()).unwrap_or_default()
    });
    let items = rows
        .into_iter()
        .map(|r| AuditEvent {
            id: r.id.to_string(),
            at: to_datetime(r.at),
            kind: r.kind,
            user_id: r.user_id,
            ip: r.ip,
            detail: r.detail,
        })
        .collect();
    Ok(List { items, next_cursor })
}
