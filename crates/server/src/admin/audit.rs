//! Security audit events: stored without secrets, readable by admins.

use axum::extract::{Query, State};
use axum::response::Response;
use basis_auth::role::Role;
use basis_store::audit::{self, NewEvent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::ClientIp;
use crate::caller::Caller;
use crate::clock::to_datetime;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::users::api::{List, Page, list_response};

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

/// Records an event. A failure to record is logged, not returned: the audit log must not
/// turn a successful login into an error.
pub async fn record(
    state: &AppState,
    kind: &str,
    user_id: Option<&str>,
    ip: &ClientIp,
    detail: Option<&str>,
) {
    let now = state.clock.now_ms();
    let ip = ip.text();
    let event = NewEvent {
        at: now,
        kind,
        user_id,
        ip: Some(&ip),
        detail,
    };
    let result = audit::record(&state.store, &event).await;
    tracing::info!(kind, user_id, ip, detail, "audit");
    if let Err(err) = result {
        tracing::error!(error = %err, kind, "cannot record an audit event");
    }
}

/// The audit log, newest first (admins).
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(Page),
    responses((status = 200, body = List<AuditEvent>), (status = 401), (status = 403)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    caller.require_role(Role::Admin)?;
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = page.limit()?;
    let before = match page.cursor.as_deref() {
        None => i64::MAX,
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::field("cursor", "is not a cursor from this list"))?,
    };
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
    Ok(list_response(
        "/admin/audit",
        limit,
        List { items, next_cursor },
    ))
}
